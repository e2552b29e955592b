package catalog

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/walrusdb/walrus/pg"
	"github.com/walrusdb/walrus/repo"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/mem"
)

const seg16 = 16 << 20

func putWAL(t *testing.T, st storage.Store, name, body string) {
	t.Helper()
	if err := st.Put(context.Background(), "wal/"+name+".none", strings.NewReader(body), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestMissingAcrossTimelineSwitch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := mem.New()
	// Timeline 1: segments 1..4; timeline 2 branched at 0/4800000 (in
	// segment 4) and has segments 4..6, with segment 5 missing.
	for _, n := range []string{
		"000000010000000000000001", "000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
		"000000020000000000000004", "000000020000000000000006",
	} {
		putWAL(t, st, n, "x")
	}
	putWAL(t, st, "00000002.history", "1\t0/4800000\tno recovery target specified\n")
	idx, err := LoadWALIndex(ctx, st, seg16)
	if err != nil {
		t.Fatal(err)
	}
	h, err := idx.History(ctx, st, &repo.Decoder{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	from, _ := pg.ParseLSN("0/1000028")
	to, _ := pg.ParseLSN("0/6000100")
	err = idx.Missing(h, 1, from, to)
	var me *MissingError
	if !errors.As(err, &me) || !errors.Is(err, ErrWALMissing) {
		t.Fatalf("Missing = %v", err)
	}
	if want := []string{"000000020000000000000005"}; !reflect.DeepEqual(me.Names, want) {
		t.Fatalf("missing %v, want %v", me.Names, want)
	}
	// Up to the switch point on timeline 1 nothing is missing.
	mid, _ := pg.ParseLSN("0/4000100")
	if err := idx.Missing(h, 1, from, mid); err != nil {
		t.Fatalf("Missing before the gap: %v", err)
	}
	// Without the history file, timeline 2 cannot be followed.
	st.Delete(ctx, "wal/00000002.history.none")
	idx, _ = LoadWALIndex(ctx, st, seg16)
	if _, err := idx.History(ctx, st, &repo.Decoder{}, 2); err == nil || !strings.Contains(err.Error(), "00000002.history") {
		t.Fatalf("History without the file: %v", err)
	}
	if tli, seg, ok := idx.Newest(); !ok || tli != 2 || seg != 6 {
		t.Fatalf("Newest = %d %d %v", tli, seg, ok)
	}
}
