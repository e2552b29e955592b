package catalog

import (
	"context"
	"reflect"
	"testing"

	"github.com/walrusdb/walrus/storage/faulty"
	"github.com/walrusdb/walrus/storage/mem"
	"github.com/walrusdb/walrus/storage/retry"
)

// TestWriteManifestRetried: a manifest upload that breaks midway is sent
// again whole, and one whose answer was lost (the retry meets the
// manifest it stored itself) succeeds instead of reporting that the backup
// exists.
func TestWriteManifestRetried(t *testing.T) {
	t.Parallel()
	for _, kind := range []faulty.Kind{faulty.BreakBody, faulty.FailAfter} {
		t.Run(kind.String(), func(t *testing.T) {
			ctx := context.Background()
			inner := mem.New()
			fst := faulty.New(inner, faulty.Script{Rules: []faulty.Rule{{Ops: faulty.Put, Kind: kind, N: 100, Calls: []int{1}}}})
			st := retry.New(fst, retry.Options{BaseDelay: 1})
			m := validManifest("base_retried", "7", 1, 0x1000028)
			if err := WriteManifest(ctx, st, m); err != nil {
				t.Fatal(err)
			}
			if fst.Faults(faulty.Put) != 1 {
				t.Fatalf("%d faults injected, want 1", fst.Faults(faulty.Put))
			}
			got, err := ReadManifest(ctx, inner, m.Name)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Backup, m.Backup) || len(got.Files) != len(m.Files) {
				t.Fatalf("stored manifest differs:\n got %+v\nwant %+v", got.Backup, m.Backup)
			}
		})
	}
}
