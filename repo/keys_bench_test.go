package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/fs"
)

// BenchmarkFindObjectLargeArchive looks for a segment that is not
// archived (what every wal-push of a new segment does) in a filesystem
// repository already holding 20,000 segments: a Stat per suffix, where a
// listing would read the whole wal/ directory each time.
//
//	go test -run '^$' -bench FindObjectLargeArchive ./repo/
func BenchmarkFindObjectLargeArchive(b *testing.B) {
	dir := b.TempDir()
	st, err := fs.New(dir)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "wal"), 0o700); err != nil {
		b.Fatal(err)
	}
	for i := range 20000 {
		name := fmt.Sprintf("wal/00000001%08X%08X.lz4", i>>8, i&0xff)
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if _, err := FindObject(ctx, st, "wal/0000000100000FFF00000001", ".lz4"); !errors.Is(err, storage.ErrNotFound) {
			b.Fatal(err)
		}
	}
}
