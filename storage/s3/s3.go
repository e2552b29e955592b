package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/internal/body"
)

const (
	// DefaultRegion is used when neither Config nor the SDK's sources set
	// a region.
	DefaultRegion = "us-east-1"
	// DefaultPartSize is the multipart part size when Config.PartSize is 0.
	DefaultPartSize = 8 << 20
	// MinPartSize is the smallest part size S3 accepts.
	MinPartSize = manager.MinUploadPartSize
	// MaxParts is the most parts a multipart upload may have: an object
	// holds at most MaxParts × PartSize bytes (78 GiB by default).
	MaxParts = manager.MaxUploadParts
	// DefaultConcurrency is the number of parts of one Put in flight when
	// Config.Concurrency is 0.
	DefaultConcurrency = 2
	// deleteBatch is the most keys one DeleteObjects request takes.
	deleteBatch = 1000
	// cleanupTimeout bounds an abort sent after the Put's context ended.
	cleanupTimeout = 30 * time.Second
)

// Config selects a bucket and says how to reach it. Zero values mean the
// SDK's default (credentials, region, endpoint) or the package default
// (PartSize, Concurrency).
type Config struct {
	// Bucket is the bucket's name. Required.
	Bucket string
	// Prefix is the repository root inside the bucket, without leading or
	// trailing '/'; empty for the whole bucket.
	Prefix string
	// Endpoint is the URL of an S3-compatible server, e.g.
	// "https://minio.example.com:9000".
	Endpoint string
	// Region is the bucket's region.
	Region string
	// ForcePathStyle addresses the bucket in the path
	// (https://host/bucket/key) instead of the host name.
	ForcePathStyle bool
	// AccessKeyID is the access key id of static credentials; set it
	// with SecretAccessKey, or neither to use the SDK's credential chain.
	AccessKeyID string
	// SecretAccessKey is the secret of static credentials.
	SecretAccessKey string
	// PartSize is the multipart part size in bytes, at least MinPartSize.
	PartSize int64
	// Concurrency is the number of parts of one Put uploaded at once.
	Concurrency int
	// PartAttempts is how many times one part of a multipart upload is
	// sent before the upload fails (0: DefaultPartAttempts). A part is
	// resent from its buffer; the body of a Put behind it may be a stream
	// that no layer above can replay, so a backup of hours must not fail
	// for the SDK's default of 3 attempts.
	PartAttempts int
}

// DefaultPartAttempts is Config.PartAttempts when 0.
const DefaultPartAttempts = 10

// Store is an S3 storage.Store.
type Store struct {
	client      *awss3.Client
	bucket      string
	prefix      string // "" or ending in '/'
	concurrency int    // parts of one Put in flight
	buffers     *partBuffers
	partRetry   func(*awss3.Options) // the retry policy of UploadPart and the like (partRetryOption)
	// completeRetry is partRetry without retrying answers cut short.
	completeRetry func(*awss3.Options)

	bucketSeen atomic.Bool // HeadBucket succeeded once
}

var (
	_ storage.Store       = (*Store)(nil)
	_ storage.RangeGetter = (*Store)(nil)
)

// New returns a Store for cfg. It makes no request: a wrong bucket or
// credentials show up at the first operation.
func New(ctx context.Context, cfg Config) (*Store, error) {
	return newStore(ctx, cfg)
}

// newStore is New with extra client options, for tests.
func newStore(ctx context.Context, cfg Config, optFns ...func(*awss3.Options)) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3: no bucket given")
	}
	prefix := strings.Trim(cfg.Prefix, "/")
	if prefix != "" {
		if err := storage.ValidatePrefix(prefix); err != nil {
			return nil, fmt.Errorf("s3 bucket %s: prefix: %w", cfg.Bucket, err)
		}
		prefix += "/"
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return nil, errors.New("s3: set both the access key id and the secret access key, or neither to use the AWS credential chain")
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("s3: endpoint %q: want a URL such as https://s3.example.com:9000", cfg.Endpoint)
		}
	}
	partSize := cfg.PartSize
	switch {
	case partSize == 0:
		partSize = DefaultPartSize
	case partSize < MinPartSize:
		return nil, fmt.Errorf("s3: part size %d is below the minimum of %d bytes", partSize, MinPartSize)
	}
	concurrency := cfg.Concurrency
	switch {
	case concurrency == 0:
		concurrency = DefaultConcurrency
	case concurrency < 0:
		return nil, fmt.Errorf("s3: concurrency %d must be positive", concurrency)
	}

	var opts []func(*config.LoadOptions) error
	// Checksums only when an operation requires them (see the package
	// documentation), unless the SDK's own variables ask otherwise.
	env, err := config.NewEnvConfig()
	if err != nil {
		return nil, fmt.Errorf("s3: read AWS environment: %w", err)
	}
	if env.RequestChecksumCalculation == 0 {
		opts = append(opts, config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired))
	}
	if env.ResponseChecksumValidation == 0 {
		opts = append(opts, config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = DefaultRegion
	}
	endpoint := func(o *awss3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		if cfg.ForcePathStyle {
			o.UsePathStyle = true
		}
	}
	client := awss3.NewFromConfig(awsCfg, append([]func(*awss3.Options){endpoint}, optFns...)...)
	attempts := cfg.PartAttempts
	if attempts <= 0 {
		attempts = DefaultPartAttempts
	}
	return &Store{
		client:        client,
		bucket:        cfg.Bucket,
		prefix:        prefix,
		concurrency:   concurrency,
		buffers:       newPartBuffers(int(partSize), bufferBudget(concurrency)),
		partRetry:     partRetryOption(attempts, nil),
		completeRetry: retryPolicy(attempts, nil, false),
	}, nil
}

// partRetryOption is the retry policy of the requests of an upload that
// no layer above can send again, since the body behind them may be a
// stream already consumed: UploadPart, CreateMultipartUpload, the
// PutObject of a body read into a part buffer, and the HeadObject that
// checks a stored object. It is the SDK's standard one (which errors are
// retried, backoff with jitter up to 20 s unless backoff is given) with
// attempts attempts, no retry quota (the quota is shared by the whole
// client, and a long backup on a flaky link would run it dry), and one
// more retryable error: an answer cut short (the SDK gives up on a body it
// cannot decode; resending these requests is harmless).
func partRetryOption(attempts int, backoff retry.BackoffDelayer) func(*awss3.Options) {
	return retryPolicy(attempts, backoff, true)
}

// retryPolicy is partRetryOption, retrying answers cut short or not.
// CompleteMultipartUpload does not (see Store.complete).
func retryPolicy(attempts int, backoff retry.BackoffDelayer, truncated bool) func(*awss3.Options) {
	return func(o *awss3.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = attempts
			so.RateLimiter = ratelimit.None
			if backoff != nil {
				so.Backoff = backoff
			}
			if truncated {
				// First: the SDK's own connection check answers "no"
				// for these.
				so.Retryables = append([]retry.IsErrorRetryable{retryCutAnswer}, so.Retryables...)
			}
		})
	}
}

// retryCutAnswer retries a request whose answer ended before its body
// could be decoded.
var retryCutAnswer = retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
	if isCutAnswer(err) {
		return aws.TrueTernary
	}
	return aws.UnknownTernary
})

// isCutAnswer reports whether err is an answer whose body ended early.
func isCutAnswer(err error) bool {
	var de *smithy.DeserializationError
	return errors.As(err, &de) && errors.Is(err, io.ErrUnexpectedEOF)
}

func (s *Store) objectKey(key string) string { return s.prefix + key }

// Put uploads the body. See the package documentation for IfNotExists and
// multipart uploads.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, opts storage.PutOptions) error {
	if err := storage.ValidateKey(key); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := storage.ValidateMetadata(opts.Metadata); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if opts.IfNotExists {
		_, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.objectKey(key))})
		switch {
		case err == nil:
			return fmt.Errorf("put %s: %w", key, storage.ErrExists)
		case statusCode(err) != http.StatusNotFound:
			return fmt.Errorf("put %s: check for an existing object: %w", key, err)
		}
	}
	b := body.New(ctx, r, body.Declared(opts.Size))
	in := &awss3.PutObjectInput{
		Bucket: &s.bucket,
		Key:    aws.String(s.objectKey(key)),
	}
	if len(opts.Metadata) > 0 {
		in.Metadata = maps.Clone(opts.Metadata)
	}
	if opts.IfNotExists {
		in.IfNoneMatch = aws.String("*")
	}
	var err error
	if m, ok := storage.MemoryBodyRange(r); ok && m.Size() <= int64(s.buffers.size) && (opts.Size <= 0 || opts.Size == m.Size()) {
		// Already in memory and one part: sent as it is, not copied
		// into a part buffer (wal-push's objects).
		in.Body, in.ContentLength = m, aws.Int64(m.Size())
		_, err = s.client.PutObject(ctx, in)
	} else {
		err = s.upload(ctx, in, b)
	}
	if err == nil {
		return nil
	}
	if berr := b.Err(); berr != nil {
		return fmt.Errorf("put %s: %w", key, berr)
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("put %s: %w (%w)", key, cerr, err)
	}
	if isConditionFailed(err) {
		return fmt.Errorf("put %s: %w", key, storage.ErrExists)
	}
	return fmt.Errorf("put %s: %w", key, err)
}

// abort removes a failed multipart upload's parts. The manager tries this
// itself, but with the Put's context, which may be the reason it failed.
func (s *Store) abort(ctx context.Context, objectKey *string, uploadID string) {
	if uploadID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	// An error (typically NoSuchUpload: the manager's abort got there
	// first) leaves at worst invisible parts that a bucket lifecycle rule
	// for incomplete uploads removes.
	_, _ = s.client.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{
		Bucket: &s.bucket, Key: objectKey, UploadId: &uploadID,
	})
}

// Get opens the object. The body is read over the network: a broken
// transfer gives io.ErrUnexpectedEOF, and reads fail once ctx is done.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := storage.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	out, err := s.client.GetObject(ctx, &awss3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.objectKey(key))})
	if err != nil {
		return nil, s.readError(ctx, "get", key, err)
	}
	return out.Body, nil
}

// GetRange opens length bytes of the object from offset; length < 0 means
// to the end. A range past the end of the object is cut short, down to
// empty.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := storage.ValidateKey(key); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d", key, offset)
	}
	if length == 0 {
		// No HTTP range is empty; confirm the object exists instead.
		if _, err := s.Stat(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	rng := fmt.Sprintf("bytes=%d-", offset)
	if length > 0 {
		rng += fmt.Sprint(offset + length - 1)
	}
	out, err := s.client.GetObject(ctx, &awss3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.objectKey(key)), Range: &rng})
	if err != nil {
		if statusCode(err) == http.StatusRequestedRangeNotSatisfiable {
			// The object exists and offset is at or past its end.
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		return nil, s.readError(ctx, "get", key, err)
	}
	if out.ContentRange == nil || *out.ContentRange == "" {
		// The server ignored the Range header and sent the whole object.
		return skipLimit(out.Body, offset, length)
	}
	return out.Body, nil
}

// skipLimit cuts [offset, offset+length) out of a whole-object body.
func skipLimit(rc io.ReadCloser, offset, length int64) (io.ReadCloser, error) {
	if _, err := io.CopyN(io.Discard, rc, offset); err != nil && err != io.EOF {
		rc.Close()
		return nil, err
	}
	var r io.Reader = rc
	if length >= 0 {
		r = io.LimitReader(rc, length)
	}
	return struct {
		io.Reader
		io.Closer
	}{r, rc}, nil
}

// Stat returns the object's size, time and metadata.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if err := storage.ValidateKey(key); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	out, err := s.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.objectKey(key))})
	if err != nil {
		return storage.ObjectInfo{}, s.readError(ctx, "stat", key, err)
	}
	info := storage.ObjectInfo{
		Key:     key,
		Size:    aws.ToInt64(out.ContentLength),
		ModTime: aws.ToTime(out.LastModified),
	}
	if len(out.Metadata) > 0 {
		info.Metadata = make(map[string]string, len(out.Metadata))
		for k, v := range out.Metadata {
			info.Metadata[strings.ToLower(k)] = v
		}
	}
	return info, nil
}

// readError maps a GetObject or HeadObject error. Only an absent key in an
// existing bucket becomes storage.ErrNotFound.
func (s *Store) readError(ctx context.Context, op, key string, err error) error {
	if statusCode(err) != http.StatusNotFound {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	switch errorCode(err) {
	case "NoSuchKey":
		return fmt.Errorf("%s %s: %w", op, key, storage.ErrNotFound)
	case "NoSuchBucket":
		return fmt.Errorf("%s %s: bucket %s does not exist: %w", op, key, s.bucket, err)
	}
	// HeadObject's 404 has no body, so no code: it may be the bucket
	// that is missing.
	if !s.bucketSeen.Load() {
		_, berr := s.client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &s.bucket})
		switch {
		case berr == nil:
			s.bucketSeen.Store(true)
		case statusCode(berr) == http.StatusNotFound:
			return fmt.Errorf("%s %s: bucket %s does not exist: %w", op, key, s.bucket, berr)
		default:
			return fmt.Errorf("%s %s: not found, but the bucket could not be checked: %w", op, key, berr)
		}
	}
	return fmt.Errorf("%s %s: %w", op, key, storage.ErrNotFound)
}

// List calls fn for every object under prefix in key order.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	p := awss3.NewListObjectsV2Paginator(s.client, &awss3.ListObjectsV2Input{
		Bucket: &s.bucket,
		Prefix: aws.String(s.objectKey(prefix)),
	})
	var last string
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, obj := range page.Contents {
			name := aws.ToString(obj.Key)
			key, ok := strings.CutPrefix(name, s.prefix)
			if !ok || !strings.HasPrefix(key, prefix) || storage.ValidateKey(key) != nil {
				continue
			}
			if key <= last && last != "" {
				return fmt.Errorf("list %s: the server listed %q after %q, out of order", prefix, key, last)
			}
			last = key
			info := storage.ObjectInfo{Key: key, Size: aws.ToInt64(obj.Size), ModTime: aws.ToTime(obj.LastModified)}
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete removes the keys with DeleteObjects, 1000 at a time, and checks
// the outcome of every key.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	for _, k := range keys {
		if err := storage.ValidateKey(k); err != nil {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", keys[0], err)
	}
	unique := slices.Clone(keys)
	slices.Sort(unique)
	unique = slices.Compact(unique)
	for batch := range slices.Chunk(unique, deleteBatch) {
		if err := s.deleteBatch(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) deleteBatch(ctx context.Context, keys []string) error {
	ids := make([]types.ObjectIdentifier, len(keys))
	for i, k := range keys {
		ids[i] = types.ObjectIdentifier{Key: aws.String(s.objectKey(k))}
	}
	out, err := s.client.DeleteObjects(ctx, &awss3.DeleteObjectsInput{
		Bucket: &s.bucket,
		Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
	})
	if err != nil {
		if errorCode(err) == "NotImplemented" || statusCode(err) == http.StatusNotImplemented {
			return s.deleteOneByOne(ctx, keys)
		}
		return fmt.Errorf("delete %s (and %d more): %w", keys[0], len(keys)-1, err)
	}
	for _, e := range out.Errors {
		if aws.ToString(e.Code) == "NoSuchKey" {
			continue
		}
		key := strings.TrimPrefix(aws.ToString(e.Key), s.prefix)
		return fmt.Errorf("delete %s: %s: %s", key, aws.ToString(e.Code), aws.ToString(e.Message))
	}
	return nil
}

// deleteOneByOne serves servers without DeleteObjects (e.g. Google Cloud
// Storage's XML API).
func (s *Store) deleteOneByOne(ctx context.Context, keys []string) error {
	for _, k := range keys {
		_, err := s.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.objectKey(k))})
		if err != nil && (statusCode(err) != http.StatusNotFound || errorCode(err) == "NoSuchBucket") {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	}
	return nil
}

// Close releases nothing: the SDK's client needs no closing.
func (s *Store) Close() error { return nil }

// statusCode returns the HTTP status of a failed request, or 0.
func statusCode(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// errorCode returns the S3 error code of a failed request, or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// isConditionFailed reports whether a conditional write found the key
// taken: 412, or 409 ConditionalRequestConflict from a concurrent one.
func isConditionFailed(err error) bool {
	switch errorCode(err) {
	case "PreconditionFailed", "ConditionalRequestConflict":
		return true
	}
	return statusCode(err) == http.StatusPreconditionFailed
}
