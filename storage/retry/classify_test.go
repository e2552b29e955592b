package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/faulty"
	"github.com/walrusdb/walrus/storage/retry"
)

// s3Error builds the error chain the AWS SDK returns for an HTTP error
// answer: an operation error around a response error around an API error.
func s3Error(status int, code string) error {
	resp := &smithyhttp.Response{Response: &http.Response{StatusCode: status}}
	var inner error = &smithy.GenericAPIError{Code: code, Message: "from the server"}
	if code == "" {
		inner = errors.New("no body")
	}
	return fmt.Errorf("put wal/x: %w", &smithy.OperationError{
		ServiceID: "S3", OperationName: "PutObject",
		Err: &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{Response: resp, Err: inner}},
	})
}

func TestIsRetryable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"503 SlowDown", s3Error(503, "SlowDown"), true},
		{"500 InternalError", s3Error(500, "InternalError"), true},
		{"503 without a code", s3Error(503, ""), true},
		{"502", s3Error(502, ""), true},
		{"429", s3Error(429, "TooManyRequests"), true},
		{"400 RequestTimeout", s3Error(400, "RequestTimeout"), true},
		{"throttling code", s3Error(400, "Throttling"), true},
		{"403 AccessDenied", s3Error(403, "AccessDenied"), false},
		{"403 without a code", s3Error(403, ""), false},
		{"404 NoSuchKey", s3Error(404, "NoSuchKey"), false},
		{"404 NoSuchBucket", s3Error(404, "NoSuchBucket"), false},
		{"400 InvalidArgument", s3Error(400, "InvalidArgument"), false},
		{"412 PreconditionFailed", s3Error(412, "PreconditionFailed"), false},
		{"501 NotImplemented", s3Error(501, "NotImplemented"), false},
		{"200 with a truncated body", fmt.Errorf("list: %w", &smithy.DeserializationError{Err: errors.New("xml: unexpected EOF")}), true},
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, true},
		{"broken pipe", fmt.Errorf("write: %w", syscall.EPIPE), true},
		{"request not sent", &smithyhttp.RequestSendError{Err: errors.New("http: server closed idle connection")}, true},
		{"no such host", &net.DNSError{Err: "no such host", Name: "s3.invalid", IsNotFound: true}, false},
		{"DNS timeout", &net.DNSError{Err: "timeout", Name: "s3.example.com", IsTimeout: true}, true},
		{"short read", fmt.Errorf("get k: %w", io.ErrUnexpectedEOF), true},
		{"EOF instead of an answer", fmt.Errorf(`Put "http://x/k": %w`, io.EOF), true},
		{"not found", fmt.Errorf("stat k: %w", storage.ErrNotFound), false},
		{"exists", fmt.Errorf("put k: %w", storage.ErrExists), false},
		{"cancelled", fmt.Errorf("get k: %w", context.Canceled), false},
		{"deadline", fmt.Errorf("get k: %w", context.DeadlineExceeded), false},
		{"invalid key", errors.New(`put ../x: invalid key "../x": component ".." starts with '.'`), false},
		{"disk full", fmt.Errorf("write: %w", syscall.ENOSPC), false},
		{"permission", fmt.Errorf("open: %w", os.ErrPermission), false},
		{"marked permanent", retry.Permanent(io.ErrUnexpectedEOF), false},
		{"injected transient", faulty.ErrTransient, true},
		{"injected permanent", faulty.ErrPermanent, false},
		{"nil", nil, false},
	} {
		if got := retry.IsRetryable(tc.err); got != tc.want {
			t.Errorf("%s: IsRetryable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
