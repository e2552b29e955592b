package pg

import "testing"

func TestBackupRule(t *testing.T) {
	set := func(names ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	db := set("16384", "16384_fsm", "16384_vm", "16384.1", "16390", "16390_init", "16390_fsm", "16390.1", "t3_16400", "pg_internal.init", "PG_VERSION")
	tests := []struct {
		dir, name string
		isDir     bool
		siblings  map[string]bool
		want      BackupAction
	}{
		// Top level.
		{"", "postmaster.pid", false, nil, BackupSkip},
		{"", "postmaster.opts", false, nil, BackupSkip},
		{"", "backup_label", false, nil, BackupSkip},
		{"", "backup_label.old", false, nil, BackupSkip},
		{"", "tablespace_map", false, nil, BackupSkip},
		{"", "current_logfiles", false, nil, BackupSkip},
		{"", "postgresql.auto.conf.tmp", false, nil, BackupSkip},
		{"", "recovery.signal", false, nil, BackupSkip},
		{"", "standby.signal", false, nil, BackupSkip},
		{"", RestoreConfigFile, false, nil, BackupSkip},
		{"", "postgresql.auto.conf", false, nil, BackupInclude},
		{"", "postgresql.conf", false, nil, BackupInclude},
		{"", "PG_VERSION", false, nil, BackupInclude},
		{"", "pg_wal", true, nil, BackupInclude},
		{"", "log", true, nil, BackupInclude},
		{"", "pg_stat", true, nil, BackupInclude},
		{"", "pg_xact", true, nil, BackupInclude},
		{"", "pg_stat_tmp", true, nil, BackupEmptyDir},
		{"", "pg_replslot", true, nil, BackupEmptyDir},
		{"", "pg_dynshmem", true, nil, BackupEmptyDir},
		{"", "pg_notify", true, nil, BackupEmptyDir},
		{"", "pg_serial", true, nil, BackupEmptyDir},
		{"", "pg_snapshots", true, nil, BackupEmptyDir},
		{"", "pg_subtrans", true, nil, BackupEmptyDir},
		// A file named like a skipped one elsewhere is kept (TRAPS 13).
		{"log", "postmaster.pid", false, nil, BackupInclude},
		{"base/1", "pg_stat_tmp", true, nil, BackupInclude},
		{"pg_xact", "backup_label", false, nil, BackupInclude},
		{"log", "pgsql_tmp1", false, nil, BackupInclude},
		// pg_wal.
		{"pg_wal", "000000010000000000000001", false, nil, BackupSkip},
		{"pg_wal", "00000002.history", false, nil, BackupSkip},
		{"pg_wal", "archive_status", true, nil, BackupEmptyDir},
		{"pg_wal", "summaries", true, nil, BackupSkip},
		// Relation cache init files.
		{"global", "pg_internal.init", false, nil, BackupSkip},
		{"global", "pg_internal.init.123", false, nil, BackupSkip},
		{"global", "pg_control", false, nil, BackupInclude},
		{"global", "1262", false, nil, BackupInclude},
		{"base/16383", "pg_internal.init", false, db, BackupSkip},
		// Temporary files.
		{"base", "pgsql_tmp", true, nil, BackupSkip},
		{"base", "16383", true, nil, BackupInclude},
		{"pg_tblspc/16500/PG_15_202209061", "pgsql_tmp", true, nil, BackupSkip},
		{"pg_tblspc/16500/PG_15_202209061", "16383", true, nil, BackupInclude},
		// Tablespace root: only the version directory.
		{"pg_tblspc/16500", "PG_15_202209061", true, nil, BackupInclude},
		{"pg_tblspc/16500", "PG_14_202107181", true, nil, BackupSkip},
		{"pg_tblspc/16500", "lost+found", true, nil, BackupSkip},
		{"pg_tblspc/16500", "README", false, nil, BackupSkip},
		{"pg_tblspc", "16500", true, nil, BackupInclude},
		// Database directories: permanent, temporary, unlogged relations.
		{"base/16383", "16384", false, db, BackupInclude},
		{"base/16383", "16384_fsm", false, db, BackupInclude},
		{"base/16383", "16384.1", false, db, BackupInclude},
		{"base/16383", "16390", false, db, BackupSkip},
		{"base/16383", "16390.1", false, db, BackupSkip},
		{"base/16383", "16390_fsm", false, db, BackupSkip},
		{"base/16383", "16390_init", false, db, BackupInclude},
		{"base/16383", "t3_16400", false, db, BackupSkip},
		{"base/16383", "t3_16400_fsm", false, db, BackupSkip},
		{"base/16383", "t3_16400.2", false, db, BackupSkip},
		{"base/16383", "PG_VERSION", false, db, BackupInclude},
		{"base/16383", "pg_filenode.map", false, db, BackupInclude},
		{"pg_tblspc/16500/PG_15_202209061/16383", "16390", false, db, BackupSkip},
		{"pg_tblspc/16500/PG_15_202209061/16383", "16390_init", false, db, BackupInclude},
		{"pg_tblspc/16500/PG_15_202209061/16383", "t12_5", false, db, BackupSkip},
		{"pg_tblspc/16500/PG_15_202209061/16383", "16384", false, db, BackupInclude},
		// Not database directories: the unlogged rule does not apply.
		{"base/016383", "16390", false, db, BackupInclude},
		{"global", "16390", false, db, BackupInclude},
		{"other/16383", "t3_16400", false, db, BackupInclude},
	}
	for _, tc := range tests {
		want := tc.want
		if got := BackupRule(tc.dir, tc.name, tc.isDir, tc.siblings); got != want {
			t.Errorf("BackupRule(%q, %q, dir=%v) = %v, want %v", tc.dir, tc.name, tc.isDir, got, want)
		}
	}
}

func TestIsTempRelationName(t *testing.T) {
	for name, want := range map[string]bool{
		"t3_16400": true, "t3_16400_fsm": true, "t3_16400_vm.1": true, "t12_1.3": true,
		"t_16400": false, "t3_": false, "t3_x": false, "16400": false, "t3_16400_foo": false, "t3_16400.x": false, "tt3_1": false,
	} {
		if got := IsTempRelationName(name); got != want {
			t.Errorf("IsTempRelationName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestIsDatabaseDir(t *testing.T) {
	for dir, want := range map[string]bool{
		"base/1": true, "base/16384": true, "pg_tblspc/16500/PG_15_202209061/16384": true,
		"base": false, "base/0": false, "base/01": false, "base/pgsql_tmp": false, "global": false,
		"pg_tblspc/16500/PG_15_202209061": false, "pg_tblspc/16500/PG_16_x/1": false, "x/base/1": false,
	} {
		if got := IsDatabaseDir(dir); got != want {
			t.Errorf("IsDatabaseDir(%q) = %v, want %v", dir, got, want)
		}
	}
	if oid, ok := TablespaceLinkOID("pg_tblspc/16500"); !ok || oid != 16500 {
		t.Errorf("TablespaceLinkOID = %d %v", oid, ok)
	}
	for _, bad := range []string{"pg_tblspc", "pg_tblspc/", "pg_tblspc/0", "pg_tblspc/16500/x", "x/pg_tblspc/1"} {
		if _, ok := TablespaceLinkOID(bad); ok {
			t.Errorf("TablespaceLinkOID(%q) accepted", bad)
		}
	}
}
