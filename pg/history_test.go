package pg

import (
	"strings"
	"testing"
)

const history3 = `1	0/3000158	no recovery target specified

# a comment
2	0/5000060	at restore point "before drop"	with a tab
`

func TestParseHistory(t *testing.T) {
	t.Parallel()
	entries, err := ParseHistory(strings.NewReader(history3))
	if err != nil {
		t.Fatal(err)
	}
	want := []TimelineHistoryEntry{
		{Parent: 1, SwitchLSN: 0x3000158, Reason: "no recovery target specified"},
		{Parent: 2, SwitchLSN: 0x5000060, Reason: "at restore point \"before drop\"\twith a tab"},
	}
	if len(entries) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(entries), entries, len(want))
	}
	for i := range want {
		if entries[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, entries[i], want[i])
		}
	}

	for _, in := range []string{"", "\n\n", "# only a comment\n"} {
		if e, err := ParseHistory(strings.NewReader(in)); err != nil || len(e) != 0 {
			t.Errorf("ParseHistory(%q) = %v, %v; want no entries", in, e, err)
		}
	}
	// No reason, CRLF line ends.
	if e, err := ParseHistory(strings.NewReader("1\t0/3000158\r\n")); err != nil || len(e) != 1 || e[0].SwitchLSN != 0x3000158 {
		t.Errorf("ParseHistory without a reason = %+v, %v", e, err)
	}
}

func TestParseHistoryRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"1 0/3000158 reason\n",              // spaces, not tabs
		"x\t0/3000158\treason\n",            // bad timeline
		"0\t0/3000158\treason\n",            // timeline 0
		"1\t3000158\treason\n",              // bad LSN
		"1\t0/3000158\n1\t0/4000000\n",      // timeline repeats
		"2\t0/3000158\n1\t0/4000000\n",      // timeline goes back
		"1\t0/5000000\n2\t0/4000000\n",      // switch point goes back
		"1\t0/3000158\treason\n2\t0/G\tx\n", // bad second line
	} {
		if e, err := ParseHistory(strings.NewReader(in)); err == nil {
			t.Errorf("ParseHistory(%q) = %+v, want an error", in, e)
		}
	}
}

func TestReadHistory(t *testing.T) {
	t.Parallel()
	h, err := ReadHistory(3, strings.NewReader(history3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadHistory(2, strings.NewReader(history3)); err == nil {
		t.Error("history of timeline 2 listing timeline 2 as an ancestor accepted")
	}

	tests := []struct {
		tli    TimelineID
		wantSw LSN
		wantOK bool
	}{
		{1, 0x3000158, true},
		{2, 0x5000060, true},
		{3, InvalidLSN, true},
		{4, InvalidLSN, false},
	}
	for _, tt := range tests {
		sw, ok := h.SwitchPoint(tt.tli)
		if sw != tt.wantSw || ok != tt.wantOK {
			t.Errorf("SwitchPoint(%d) = %s, %v; want %s, %v", tt.tli, sw, ok, tt.wantSw, tt.wantOK)
		}
	}

	contains := []struct {
		tli  TimelineID
		lsn  LSN
		want bool
	}{
		{1, 0x1000000, true},
		{1, 0x3000157, true},
		{1, 0x3000158, false}, // the switch point itself belongs to timeline 2
		{1, 0x6000000, false},
		{2, 0x4000000, true},
		{2, 0x5000060, false},
		{3, 0x9000000, true},
		{4, 0x1000000, false},
	}
	for _, tt := range contains {
		if got := h.Contains(tt.tli, tt.lsn); got != tt.want {
			t.Errorf("Contains(%d, %s) = %v, want %v", tt.tli, tt.lsn, got, tt.want)
		}
	}

	at := []struct {
		lsn  LSN
		want TimelineID
	}{
		{0x1000000, 1}, {0x3000157, 1}, {0x3000158, 2}, {0x5000059, 2}, {0x5000060, 3}, {0xFFFFFFFF, 3},
	}
	for _, tt := range at {
		if got := h.TimelineAt(tt.lsn); got != tt.want {
			t.Errorf("TimelineAt(%s) = %d, want %d", tt.lsn, got, tt.want)
		}
	}

	// Timeline 1 has no history file: only itself.
	h1 := History{TLI: 1}
	if sw, ok := h1.SwitchPoint(1); !ok || sw != InvalidLSN {
		t.Errorf("timeline 1 SwitchPoint(1) = %s, %v", sw, ok)
	}
	if h1.TimelineAt(0x1234) != 1 || !h1.Contains(1, 0x1234) || h1.Contains(2, 0x1234) {
		t.Error("timeline 1 history answers wrongly")
	}
}

func FuzzParseHistory(f *testing.F) {
	f.Add(history3)
	f.Add("1\t0/0\n")
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := ParseHistory(strings.NewReader(in))
		if err != nil {
			return
		}
		for i := 1; i < len(entries); i++ {
			if entries[i].Parent <= entries[i-1].Parent || entries[i].SwitchLSN < entries[i-1].SwitchLSN {
				t.Fatalf("accepted out-of-order entries %+v", entries)
			}
		}
	})
}
