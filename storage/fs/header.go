package fs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"maps"
	"slices"
	"strings"
	"time"
)

// magic starts a file that carries a metadata header.
const magic = "\x00walrus-object-v1\n"

// maxMetadata bounds the metadata block of a header.
const maxMetadata = 64 << 10

// object describes a stored file as its header reveals it.
type object struct {
	dataOffset int64 // where the object's bytes start in the file
	size       int64 // the object's size, without the header
	modTime    time.Time
	md         map[string]string
}

// encodeHeader returns the header for md, or nil when md is empty.
func encodeHeader(md map[string]string) ([]byte, error) {
	if len(md) == 0 {
		return nil, nil
	}
	var block strings.Builder
	for _, k := range slices.Sorted(maps.Keys(md)) {
		block.WriteString(k)
		block.WriteByte('=')
		block.WriteString(md[k])
		block.WriteByte('\n')
	}
	if block.Len() > maxMetadata {
		return nil, fmt.Errorf("metadata of %d bytes exceeds %d", block.Len(), maxMetadata)
	}
	h := make([]byte, 0, len(magic)+4+block.Len())
	h = append(h, magic...)
	h = binary.BigEndian.AppendUint32(h, uint32(block.Len()))
	return append(h, block.String()...), nil
}

// emptyHeader is the header written for an object without metadata whose
// bytes start with the magic.
func emptyHeader() []byte {
	return binary.BigEndian.AppendUint32([]byte(magic), 0)
}

// readHeader reads the header of f, whose stat is fi, if it has one.
func readHeader(f io.ReaderAt, fi iofs.FileInfo) (object, error) {
	obj := object{size: fi.Size(), modTime: fi.ModTime()}
	if fi.Size() < int64(len(magic)) {
		return obj, nil
	}
	var fixed [len(magic) + 4]byte
	n, err := f.ReadAt(fixed[:], 0)
	if n < len(magic) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return object{}, fmt.Errorf("read header: %w", err)
	}
	if string(fixed[:len(magic)]) != magic {
		return obj, nil
	}
	if n < len(fixed) {
		return object{}, errors.New("read header: truncated")
	}
	mdLen := binary.BigEndian.Uint32(fixed[len(magic):])
	if mdLen > maxMetadata || int64(len(fixed))+int64(mdLen) > fi.Size() {
		return object{}, fmt.Errorf("read header: corrupt metadata length %d", mdLen)
	}
	block := make([]byte, mdLen)
	if _, err := f.ReadAt(block, int64(len(fixed))); err != nil {
		return object{}, fmt.Errorf("read header: %w", err)
	}
	if mdLen > 0 {
		obj.md = make(map[string]string)
		for _, line := range strings.SplitAfter(string(block), "\n") {
			if line == "" {
				continue
			}
			k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
			if !ok || !strings.HasSuffix(line, "\n") {
				return object{}, fmt.Errorf("read header: corrupt metadata line %q", line)
			}
			obj.md[k] = v
		}
	}
	obj.dataOffset = int64(len(fixed)) + int64(mdLen)
	obj.size = fi.Size() - obj.dataOffset
	return obj, nil
}
