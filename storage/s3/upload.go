package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"
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
		_, err := s.client.PutObject(ctx, in)
		return err
	}
	created, err := s.client.CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{
		Bucket:   in.Bucket,
		Key:      in.Key,
		Metadata: in.Metadata,
	})
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
	)
	send := func(num int32, part []byte) {
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
	_, err = s.client.CompleteMultipartUpload(ctx, &awss3.CompleteMultipartUploadInput{
		Bucket:          in.Bucket,
		Key:             in.Key,
		UploadId:        aws.String(uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     in.IfNoneMatch,
	})
	return err
}
