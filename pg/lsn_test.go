package pg

import (
	"encoding/json"
	"testing"
)

func TestParseLSN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want LSN
		str  string
	}{
		{"0/0", 0, "0/0"},
		{"0/16B3748", 0x16B3748, "0/16B3748"},
		{"16/B374D848", 0x16B374D848, "16/B374D848"},
		{"16/b374d848", 0x16B374D848, "16/B374D848"},
		{"FFFFFFFF/FFFFFFFF", 0xFFFFFFFFFFFFFFFF, "FFFFFFFF/FFFFFFFF"},
		{" 1/0 ", 1 << 32, "1/0"},
	}
	for _, tt := range tests {
		got, err := ParseLSN(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseLSN(%q) = %#x, %v; want %#x", tt.in, uint64(got), err, uint64(tt.want))
			continue
		}
		if got.String() != tt.str {
			t.Errorf("LSN(%#x).String() = %q, want %q", uint64(got), got.String(), tt.str)
		}
		if back, err := ParseLSN(got.String()); err != nil || back != got {
			t.Errorf("round trip of %s = %#x, %v", got, uint64(back), err)
		}
	}
	for _, in := range []string{"", "/", "0/", "/0", "0", "0x1/0", "1/2/3", "G/0", "100000000/0", "0/100000000", "-1/0", "1 /0"} {
		if got, err := ParseLSN(in); err == nil {
			t.Errorf("ParseLSN(%q) = %s, want an error", in, got)
		}
	}
}

func TestLSNJSON(t *testing.T) {
	t.Parallel()
	type doc struct {
		Start LSN `json:"start"`
	}
	b, err := json.Marshal(doc{Start: 0x16B374D848})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"start":"16/B374D848"}` {
		t.Fatalf("marshal = %s", b)
	}
	var d doc
	if err := json.Unmarshal(b, &d); err != nil || d.Start != 0x16B374D848 {
		t.Fatalf("unmarshal = %+v, %v", d, err)
	}
	if err := json.Unmarshal([]byte(`{"start":"nope"}`), &d); err == nil {
		t.Fatal("unmarshal of a bad LSN succeeded")
	}
}
