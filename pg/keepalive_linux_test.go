//go:build linux

package pg_test

import (
	"net"
	"syscall"
	"testing"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/pg"
)

// TestConnectSetsKeepalives checks the socket options of a real session:
// a backup session must survive idle periods and notice a dead server.
func TestConnectSetsKeepalives(t *testing.T) {
	t.Parallel()
	c := pgtest.New(t, pgtest.Options{})
	c.Start(t)
	conn, err := pg.Connect(t.Context(), c.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	tcp, ok := conn.PgConn().Conn().(*net.TCPConn)
	if !ok {
		t.Fatalf("connection is a %T, want *net.TCPConn", conn.PgConn().Conn())
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var keepalive, idle int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		keepalive, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		if serr == nil {
			idle, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		}
	}); err != nil || serr != nil {
		t.Fatalf("getsockopt: %v, %v", err, serr)
	}
	if keepalive == 0 || idle != 30 {
		t.Fatalf("SO_KEEPALIVE = %d, TCP_KEEPIDLE = %d; want on and 30", keepalive, idle)
	}
}
