package pg

import "testing"

func TestParseRelFilePath(t *testing.T) {
	t.Parallel()
	good := []struct {
		path string
		want RelFile
	}{
		{"base/5/16384", RelFile{DBOID: 5, TablespaceOID: 1663, RelNode: 16384}},
		{"base/5/16384.1", RelFile{DBOID: 5, TablespaceOID: 1663, RelNode: 16384, Segment: 1}},
		{"base/5/16384.12", RelFile{DBOID: 5, TablespaceOID: 1663, RelNode: 16384, Segment: 12}},
		{"base/5/16384_fsm", RelFile{DBOID: 5, TablespaceOID: 1663, RelNode: 16384, Fork: "fsm"}},
		{"base/5/16384_vm", RelFile{DBOID: 5, TablespaceOID: 1663, RelNode: 16384, Fork: "vm"}},
		{"base/5/16384_init", RelFile{DBOID: 5, TablespaceOID: 1663, RelNode: 16384, Fork: "init"}},
		{"base/5/16384_fsm.2", RelFile{DBOID: 5, TablespaceOID: 1663, RelNode: 16384, Fork: "fsm", Segment: 2}},
		{"base/1/1259", RelFile{DBOID: 1, TablespaceOID: 1663, RelNode: 1259}},
		{"base/4294967295/4294967295", RelFile{DBOID: 4294967295, TablespaceOID: 1663, RelNode: 4294967295}},
		{"global/1262", RelFile{TablespaceOID: 1664, RelNode: 1262}},
		{"global/1262_vm", RelFile{TablespaceOID: 1664, RelNode: 1262, Fork: "vm"}},
		{"global/1262.3", RelFile{TablespaceOID: 1664, RelNode: 1262, Segment: 3}},
		{"pg_tblspc/16385/PG_15_202209061/5/16390", RelFile{DBOID: 5, TablespaceOID: 16385, RelNode: 16390}},
		{"pg_tblspc/16385/PG_15_202209061/16386/16390_vm.1", RelFile{DBOID: 16386, TablespaceOID: 16385, RelNode: 16390, Fork: "vm", Segment: 1}},
	}
	for _, g := range good {
		got, ok := ParseRelFilePath(g.path)
		g.want.Path = g.path
		if !ok || got != g.want {
			t.Errorf("ParseRelFilePath(%q) = %+v, %v; want %+v", g.path, got, ok, g.want)
		}
		if got.IsDataFork() != (g.want.Fork == "") {
			t.Errorf("%q: IsDataFork = %v", g.path, got.IsDataFork())
		}
	}
	bad := []string{
		"", "base", "base/5", "base/5/", "global", "global/",
		"base/5/pg_filenode.map", "global/pg_filenode.map", "base/5/PG_VERSION",
		"base/5/pg_internal.init", "global/pg_internal.init", "global/pg_control",
		"base/5/t3_16384", "base/5/t3_16384.1", "base/5/t3_16384_fsm", // temporary relations
		"base/5/16384_main", "base/5/16384_fsm_vm", "base/5/16384_", "base/5/16384_FSM",
		"base/5/16384.", "base/5/16384.0", "base/5/16384.01", "base/5/16384.1.2", "base/5/16384.-1",
		"base/5/16384.1_fsm", // fork after segment
		"base/5/016384", "base/05/16384", "base/0/16384", "base/5/0", "base/5/+1", "base/5/-1",
		"base/5/4294967296", "base/4294967296/1", "base/5/12a", "base/5/a12", "base/abc/16384",
		"base/5/16384.99999999999", "base/5/16384.1073741825",
		"/base/5/16384", "./base/5/16384", "base//5/16384", "base/./5/16384", "base/5/16384/",
		"base/5/6/16384", "pgdata/base/5/16384", "x/base/5/16384", "data/global/1262",
		"base\\5\\16384",
		"pg_tblspc/16385/5/16390", "pg_tblspc/16385/PG_15_202209061/16390",
		"pg_tblspc/16385/PG_14_202107181/5/16390", "pg_tblspc/16385/PG_15_/5/16390",
		"pg_tblspc/16385/PG_15_2022x/5/16390", "pg_tblspc/16385/PG_15_202209061/pgsql_tmp/16390",
		"pg_tblspc/016385/PG_15_202209061/5/16390", "pg_tblspc/16385/PG_15_202209061/5/16390/1",
		"pg_wal/000000010000000000000001", "pg_xact/0000", "base/5/pgsql_tmp/pgsql_tmp123.0",
		"global/1262_init.0",
	}
	for _, p := range bad {
		if got, ok := ParseRelFilePath(p); ok {
			t.Errorf("ParseRelFilePath(%q) = %+v, want not a relation file", p, got)
		}
	}
}
