package load

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
)

// Classify names an error by its kind (refused, reset, timeout, HTTP 503 …) so that counts
// group together instead of differing by ephemeral port numbers.
func Classify(err error) string {
	var se StatusError
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &se):
		return se.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before a full response"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, new(*net.DNSError)):
		return "name not resolved"
	default:
		return err.Error()
	}
}
