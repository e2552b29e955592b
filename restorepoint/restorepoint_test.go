package restorepoint

import (
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "before-migration-42", "rp_1.2", strings.Repeat("x", 63)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q): %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"":                      "empty",
		strings.Repeat("x", 64): "63",
		".hidden":               "start",
		"-flag":                 "start",
		"a/b":                   "'/'",
		"../../etc":             "start",
		"name with space":       "' '",
		"naïve":                 "'ï'",
	} {
		err := ValidateName(bad)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateName(%q) = %v, want mention of %q", bad, err, want)
		}
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 11, 21, 18, 50, 0, 123456000, time.UTC)
	for _, in := range []string{
		"2026-11-21 18:50:00.123456+00",
		"2026-11-21 18:50:00.123456+00:00",
		"2026-11-21T18:50:00.123456Z",
		"2026-11-21 19:50:00.123456+01",
		"2026-11-21T20:50:00.123456+02:00",
	} {
		got, err := ParseTime(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v", in, got, err)
		}
	}
	local, err := ParseTime("2026-11-21 18:50:00")
	if err != nil || !local.Equal(time.Date(2026, 11, 21, 18, 50, 0, 0, time.Local)) {
		t.Errorf("zoneless time: %v %v", local, err)
	}
	for _, bad := range []string{"yesterday", "2026-13-01 00:00:00+00", "18:50"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
	// FormatTime round-trips through ParseTime with an explicit offset.
	back, err := ParseTime(FormatTime(want))
	if err != nil || !back.Equal(want) {
		t.Errorf("FormatTime round trip: %q → %v %v", FormatTime(want), back, err)
	}
}

func TestDecodeRejectsMismatchedName(t *testing.T) {
	t.Parallel()
	body := `{"name":"rp1","lsn":"0/3000028","timeline":1,"time":"2026-11-21T18:50:00Z"}`
	if _, err := decode(strings.NewReader(body), "restore-points/rp1.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := decode(strings.NewReader(body), "restore-points/rp2.json"); err == nil {
		t.Fatal("a record under another name's key was accepted")
	}
	if _, err := decode(strings.NewReader(`{"name":"rp1"}`), "restore-points/rp1.json"); err == nil {
		t.Fatal("a record without an LSN was accepted")
	}
}
