package restorepoint

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/walrusdb/walrus/repo"
)

// FuzzDecode feeds arbitrary bytes to the restore-point record decoder, as
// read from restore-points/<name>.json. It must never panic; what it
// accepts must be a record that a restore can use and that matches its key.
func FuzzDecode(f *testing.F) {
	good, err := json.MarshalIndent(Record{
		Name: "before-migration-42", LSN: 0x3000158, Timeline: 2,
		Time: time.Date(2026, 11, 21, 18, 50, 0, 0, time.UTC), SystemIdentifier: "7300000000000000001",
		WALFile: "000000020000000000000003",
	}, "", "  ")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(good),
		`{"name":"x","lsn":"0/1","timeline":1}`,
		`{"name":"x","lsn":"0/0","timeline":1}`,
		`{"name":"../../etc/passwd","lsn":"0/1","timeline":1}`,
		`{"name":"x","lsn":"zz","timeline":1}`,
		`{"name":"x","lsn":"0/1","timeline":-1}`,
		`{"name":"x","lsn":"0/1","timeline":1} trailing`,
		`[]`, `null`, `"x"`, ``, `{`,
	} {
		f.Add([]byte(s), "restore-points/x.json")
		f.Add([]byte(s), "")
	}
	f.Fuzz(func(t *testing.T, data []byte, key string) {
		rec, err := decode(bytes.NewReader(data), key)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := ValidateName(rec.Name); err != nil {
			t.Fatalf("accepted a record with an invalid name: %v", err)
		}
		if rec.LSN == 0 || rec.Timeline == 0 {
			t.Fatalf("accepted a record without an LSN or timeline: %+v", rec)
		}
		if key != "" && key != repo.RestorePointsPrefix+rec.Name+".json" && !strings.HasSuffix(key, "/"+rec.Name+".json") {
			t.Fatalf("accepted the record %q under the key %q", rec.Name, key)
		}
	})
}
