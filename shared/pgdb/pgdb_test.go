package pgdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestErrorClassification(t *testing.T) {
	assert.True(t, IsNotFound(fmt.Errorf("get: %w", pgx.ErrNoRows)))
	assert.False(t, IsUnavailable(pgx.ErrNoRows), "a missing row is an answer, not an outage")

	for _, err := range []error{
		context.DeadlineExceeded,
		fmt.Errorf("query: %w", context.DeadlineExceeded),
		&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED},
		&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET},
		&net.DNSError{Err: "no such host", Name: "postgres", IsNotFound: true},
		fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF),
		fmt.Errorf("exec: %w", pgconn.ErrConnClosed),
		puddle.ErrClosedPool,
		&pgconn.PgError{Code: "08006"}, // connection failure
		&pgconn.PgError{Code: "57P01"}, // admin shutdown
		&pgconn.PgError{Code: "57P03"}, // cannot connect now
		&pgconn.PgError{Code: "57014"}, // statement timeout
		&pgconn.PgError{Code: "53300"}, // too many connections
		&pgconn.PgError{Code: "40001"}, // serialization failure
		&pgconn.PgError{Code: "40P01"}, // deadlock
	} {
		assert.True(t, IsUnavailable(err), "%v", err)
	}
	for _, err := range []error{
		errors.New("can't scan into dest[0]: cannot scan int8 (OID 20) in binary format into *string"),
		&pgconn.PgError{Code: "42601"}, // syntax error
		&pgconn.PgError{Code: "42703"}, // undefined column
		&pgconn.PgError{Code: "22P02"}, // invalid text representation
		&pgconn.PgError{Code: "28P01"}, // wrong password: a configuration bug, not an outage
		&pgconn.PgError{Code: "0"},     // malformed: no panic
		context.Canceled,               // the caller gave up: not the database's doing
	} {
		assert.False(t, IsUnavailable(err), "%v", err)
	}
}

// The errors pgx really returns for a database nobody listens on (port 1 refuses at once)
// and for a pool closed under a request.
func TestRealConnectionErrorsAreUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, "postgres://course@127.0.0.1:1/course?connect_timeout=1")
	require.NoError(t, err)
	err = pool.Ping(ctx)
	require.Error(t, err)
	assert.True(t, IsUnavailable(err), "%v", err)

	pool.Close()
	_, err = pool.Exec(ctx, "SELECT 1")
	require.Error(t, err)
	assert.True(t, IsUnavailable(err), "%v", err)
}
