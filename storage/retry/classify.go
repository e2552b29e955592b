package retry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/aws/smithy-go"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/internal/body"
)

// retryableCodes are S3 error codes of transient conditions: throttling,
// an overloaded or failing server, a request the server gave up waiting
// for, a conflicting operation still in progress.
var retryableCodes = map[string]bool{
	"SlowDown":                   true,
	"Throttling":                 true,
	"ThrottlingException":        true,
	"ThrottledException":         true,
	"RequestThrottled":           true,
	"RequestThrottledException":  true,
	"TooManyRequests":            true,
	"TooManyRequestsException":   true,
	"RequestLimitExceeded":       true,
	"BandwidthLimitExceeded":     true,
	"InternalError":              true,
	"ServiceUnavailable":         true,
	"RequestTimeout":             true,
	"RequestTimeoutException":    true,
	"OperationAborted":           true,
	"PriorRequestNotComplete":    true,
	"ExpiredToken":               false,
	"AccessDenied":               false,
	"InvalidAccessKeyId":         false,
	"SignatureDoesNotMatch":      false,
	"NoSuchBucket":               false,
	"NoSuchKey":                  false,
	"NotFound":                   false,
	"InvalidBucketName":          false,
	"InvalidArgument":            false,
	"InvalidRequest":             false,
	"PreconditionFailed":         false,
	"ConditionalRequestConflict": false,
}

// retryableErrnos are socket errors of a connection that broke or could
// not be made; another attempt on a new connection may work.
var retryableErrnos = map[syscall.Errno]bool{
	syscall.ECONNRESET:   true,
	syscall.ECONNREFUSED: true,
	syscall.ECONNABORTED: true,
	syscall.EPIPE:        true,
	syscall.ETIMEDOUT:    true,
	syscall.EHOSTUNREACH: true,
	syscall.ENETUNREACH:  true,
	syscall.ENETDOWN:     true,
	syscall.ENETRESET:    true,
}

// IsRetryable reports whether err is a transient failure that another
// attempt of the same operation may not meet:
//   - timeouts (net.Error.Timeout, ETIMEDOUT, an S3 RequestTimeout);
//   - broken or refused connections (ECONNRESET, ECONNREFUSED, EPIPE, a
//     request the HTTP client could not send, a transfer cut short:
//     io.ErrUnexpectedEOF, or io.EOF where an answer was expected);
//   - HTTP 5xx (except 501), 408 and 429; S3 SlowDown, InternalError,
//     ServiceUnavailable and the throttling codes;
//   - a response that could not be parsed (typically a truncated body).
//
// Permanent are: storage.ErrNotFound, storage.ErrExists, a body whose size
// differs from the declared one, context cancellation and deadlines (Do
// retries a deadline error only while its own context is live), other
// HTTP 4xx such as 403 AccessDenied, 400 and 404, an invalid key, errors
// marked with Permanent, and anything not recognised.
func IsRetryable(err error) bool {
	if err == nil || isPermanent(err) {
		return false
	}
	var t *timeoutError
	if errors.As(err, &t) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrExists) || errors.Is(err, body.ErrSizeMismatch) {
		return false
	}
	// The server's own answer is the most specific: code, then status.
	var api smithy.APIError
	if errors.As(err, &api) {
		if v, ok := retryableCodes[api.ErrorCode()]; ok {
			return v
		}
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) && status.HTTPStatusCode() >= 400 {
		switch code := status.HTTPStatusCode(); {
		case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
			return true
		case code >= 500 && code != http.StatusNotImplemented && code != http.StatusHTTPVersionNotSupported:
			return true
		default:
			return false
		}
	}
	// An error that says for itself (the AWS SDK's convention).
	var self interface{ RetryableError() bool }
	if errors.As(err, &self) {
		return self.RetryableError()
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return retryableErrnos[errno]
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.IsTimeout || dns.IsTemporary
	}
	var nerr net.Error
	if errors.As(err, &nerr) && nerr.Timeout() {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return true
	}
	// The HTTP client could not send the request or read the answer
	// (smithy-go's RequestSendError).
	var conn interface{ ConnectionError() bool }
	if errors.As(err, &conn) && conn.ConnectionError() {
		return true
	}
	var deser *smithy.DeserializationError
	return errors.As(err, &deser)
}

// timeoutError is an attempt stopped by Options.CallTimeout. err, the
// inner store's error, names the operation and the key.
type timeoutError struct {
	timeout string
	err     error
}

func (e *timeoutError) Error() string {
	return e.err.Error() + " (no answer within " + e.timeout + ", retry.call_timeout)"
}

func (e *timeoutError) Unwrap() error { return e.err }

// Timeout reports true: this is a timeout.
func (e *timeoutError) Timeout() bool { return true }
