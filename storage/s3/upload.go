package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/walrusdb/walrus/internal/wait"
)

// bufferBudget is how many part buffers a Store holds at most, shared by
// all its Puts: enough for one Put to have concurrency parts in flight
// while it fills the next, and for a second Put to do the same.
func bufferBudget(concurrency int) int { return 2*concurrency + 2 }

// partBuffers is a Store's pool of part buffers: at most max of size
// bytes each, allocated when first needed and reused for the life of the
// Store, so that the memory of uploads is bounded by max × size whatever
// the number of Puts at once, and makes no garbage.
type partBuffers struct {
	size  int
	slots chan struct{} // one token per buffer that may exist
	mu    sync.Mutex
	free  [][]byte
	made  int // buffers allocated
}

func newPartBuffers(size, max int) *partBuffers {
	p := &partBuffers{size: size, slots: make(chan struct{}, max)}
	for range max {
		p.slots <- struct{}{}
	}
	return p
}

// get returns a buffer of p.size bytes, waiting until one is free.
func (p *partBuffers) get(ctx context.Context) ([]byte, error) {
	select {
	case <-p.slots:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		return b, nil
	}
	p.made++
	return make([]byte, p.size), nil
}

// put returns a buffer that get gave.
func (p *partBuffers) put(b []byte) {
	p.mu.Lock()
	p.free = append(p.free, b[:cap(b)])
	p.mu.Unlock()
	p.slots <- struct{}{}
}

// fill reads from r until buf is full or r ends; io.EOF means r ended
// (maybe after filling buf exactly).
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// upload stores r under in's key: one PutObject when r fits one part,
// otherwise a multipart upload with up to s.concurrency parts in flight,
// each sent from a buffer of s.buffers, which the SDK's retries resend
// whole. A failed multipart upload is aborted.
func (s *Store) upload(ctx context.Context, in *awss3.PutObjectInput, r io.Reader) error {
	buf, err := s.buffers.get(ctx)
	if err != nil {
		return err
	}
	n, rerr := fill(r, buf)
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		s.buffers.put(buf)
		return rerr
	}
	if rerr != nil {
		// The whole body fits one part.
		defer s.buffers.put(buf)
		in.Body = bytes.NewReader(buf[:n])
		in.ContentLength = aws.Int64(int64(n))
		_, err := s.client.PutObject(ctx, in, s.partRetry)
		if err != nil && in.IfNoneMatch != nil && isConditionFailed(err) {
			// The SDK's retry of a PUT whose answer was lost meets its
			// own object: the key holds these very bytes.
			sum := md5.Sum(buf[:n])
			if s.holdsObject(ctx, in, hex.EncodeToString(sum[:]), int64(n)) {
				return nil
			}
		}
		return err
	}
	created, err := s.client.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{
		Bucket:   in.Bucket,
		Key:      in.Key,
		Metadata: in.Metadata,
	}, s.partRetry)
	if err != nil {
		s.buffers.put(buf)
		return err
	}
	uploadID := aws.ToString(created.UploadId)
	err = s.uploadParts(ctx, in, uploadID, r, buf, n)
	if err == nil {
		return nil
	}
	s.abort(ctx, in.Key, uploadID)
	return err
}

// uploadParts sends the parts of a multipart upload, the first in
// buf[:n], the rest read from r, and completes the upload. It gives buf
// back.
func (s *Store) uploadParts(ctx context.Context, in *awss3.PutObjectInput, uploadID string, r io.Reader, buf []byte, n int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.concurrency)
	var (
		mu    sync.Mutex
		parts []types.CompletedPart
		total int64
	)
	send := func(num int32, part []byte) {
		total += int64(len(part))
		g.Go(func() error {
			defer s.buffers.put(part)
			out, err := s.client.UploadPart(gctx, &awss3.UploadPartInput{
				Bucket:        in.Bucket,
				Key:           in.Key,
				UploadId:      aws.String(uploadID),
				PartNumber:    aws.Int32(num),
				Body:          bytes.NewReader(part),
				ContentLength: aws.Int64(int64(len(part))),
			}, s.partRetry)
			if err != nil {
				return fmt.Errorf("upload part %d: %w", num, err)
			}
			mu.Lock()
			parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
			mu.Unlock()
			return nil
		})
	}
	var err error
	for num := int32(1); ; {
		send(num, buf[:n])
		if buf, err = s.buffers.get(gctx); err != nil {
			break
		}
		var rerr error
		n, rerr = fill(r, buf)
		if gctx.Err() != nil {
			s.buffers.put(buf)
			err = gctx.Err()
			break
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			s.buffers.put(buf)
			err = rerr
			break
		}
		if n == 0 {
			s.buffers.put(buf)
			break
		}
		if num++; num > MaxParts {
			s.buffers.put(buf)
			err = fmt.Errorf("the object is larger than %d parts of %d bytes: raise the part size (s3.part_size)", MaxParts, s.buffers.size)
			break
		}
		if rerr != nil {
			send(num, buf[:n]) // the last part
			break
		}
	}
	// A failed part cancels gctx: its error, not the cancellation, says
	// what happened.
	if werr := g.Wait(); werr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = werr
	}
	if err != nil {
		return err
	}
	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return int(aws.ToInt32(a.PartNumber) - aws.ToInt32(b.PartNumber)) })
	return s.complete(ctx, in, uploadID, parts, total)
}

// completeRounds is how many times complete sends CompleteMultipartUpload
// (each with the SDK's retries of UploadPart) before it gives up.
const completeRounds = 3

// complete sends CompleteMultipartUpload for parts, total bytes in all.
//
// Its answer can be lost after the server acted on it: the connection
// breaks, or the 200 response is cut short (the SDK does not retry a
// response it could not read). Another attempt then meets NoSuchUpload,
// or 412 when the Put is create-only, although the object is stored.
// So when an attempt fails in a way that may hide a success, complete
// asks HeadObject whether the key holds this very upload: the
// multipart ETag computed from the parts' ETags, the total size and the
// metadata all match. Only then is the upload taken as done; anything
// else is an error or another attempt, and the caller aborts the
// upload. A server whose ETags are not MD5-based never matches, which
// costs a failed Put, never a wrong success.
func (s *Store) complete(ctx context.Context, in *awss3.PutObjectInput, uploadID string, parts []types.CompletedPart, total int64) error {
	input := &awss3.CompleteMultipartUploadInput{
		Bucket:          in.Bucket,
		Key:             in.Key,
		UploadId:        aws.String(uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     in.IfNoneMatch,
	}
	want := multipartETag(parts)
	var err error
	for round := range completeRounds {
		if round > 0 {
			if werr := wait.Sleep(ctx, time.Duration(200<<round)*time.Millisecond); werr != nil {
				return err
			}
		}
		if _, err = s.client.CompleteMultipartUpload(ctx, input, s.completeRetry); err == nil {
			return nil
		}
		if ctx.Err() != nil || !mayHaveCompleted(err) {
			return err
		}
		if want != "" && s.holdsObject(ctx, in, want, total) {
			return nil
		}
		if errorCode(err) == "NoSuchUpload" || isConditionFailed(err) {
			// The upload is gone or the key is taken, and not by this
			// upload: another round cannot succeed.
			return err
		}
	}
	return err
}

// mayHaveCompleted reports whether a failed CompleteMultipartUpload may
// nonetheless have stored the object: every failure but a plain refusal
// (4xx) of this request, where NoSuchUpload and 412/409 count as possible
// successes, since they are what a repeat of a completed upload meets.
func mayHaveCompleted(err error) bool {
	if errorCode(err) == "NoSuchUpload" || isConditionFailed(err) {
		return true
	}
	code := statusCode(err)
	return code < 400 || code >= 500
}

// holdsObject reports whether the object in.Key has the ETag want, total
// bytes and in.Metadata: it is the object this upload sent.
func (s *Store) holdsObject(ctx context.Context, in *awss3.PutObjectInput, want string, total int64) bool {
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: in.Bucket, Key: in.Key}, s.partRetry)
	if err != nil {
		return false
	}
	return strings.Trim(aws.ToString(out.ETag), `"`) == want &&
		aws.ToInt64(out.ContentLength) == total &&
		maps.Equal(out.Metadata, in.Metadata)
}

// multipartETag is the ETag S3 gives the object of a multipart upload of
// parts: the MD5 of the parts' MD5s, a dash and the number of parts; ""
// when a part's ETag is not an MD5.
func multipartETag(parts []types.CompletedPart) string {
	h := md5.New()
	for _, p := range parts {
		sum, err := hex.DecodeString(strings.Trim(aws.ToString(p.ETag), `"`))
		if err != nil || len(sum) != md5.Size {
			return ""
		}
		h.Write(sum)
	}
	return fmt.Sprintf("%x-%d", h.Sum(nil), len(parts))
}
