package testbin_test

import (
	"os"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/internal/pgtest"
	"github.com/walrusdb/walrus/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// TestBuildRunsAsPostgres builds a trivial command twice (one build) and
// runs it as the postgres user, as an archive_command would.
func TestBuildRunsAsPostgres(t *testing.T) {
	t.Parallel()
	const pkg = "./internal/testbin/testdata/hello"
	bin := testbin.Build(t, pkg)
	if again := testbin.Build(t, pkg); again != bin {
		t.Fatalf("second Build = %s, want the first build %s", again, bin)
	}
	out, err := pgtest.RunAsPostgres(t, bin)
	if err != nil {
		t.Fatalf("run %s as postgres: %v\n%s", bin, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "hello from testbin" {
		t.Fatalf("output %q, want %q", got, "hello from testbin")
	}
}
