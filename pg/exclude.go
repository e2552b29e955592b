package pg

import (
	"strings"
)

// BackupAction says what a base backup does with one entry of the data
// directory.
type BackupAction int

const (
	// BackupInclude backs the entry up; for a directory, walk into it.
	BackupInclude BackupAction = iota
	// BackupSkip leaves the entry out entirely.
	BackupSkip
	// BackupEmptyDir keeps the directory itself (its mode matters) and
	// leaves out everything inside it.
	BackupEmptyDir
)

// String names the action.
func (a BackupAction) String() string {
	switch a {
	case BackupInclude:
		return "include"
	case BackupSkip:
		return "skip"
	case BackupEmptyDir:
		return "empty-dir"
	}
	return "BackupAction(?)"
}

// RestoreConfigFile is the file backup-fetch may write into a restored data
// directory to hold the settings of its restore_command. It can hold
// repository credentials, so base backups never copy it.
const RestoreConfigFile = "walrus-restore.yaml"

// topLevelSkippedFiles are files directly in PGDATA that a base backup
// leaves out: PostgreSQL's own list (basebackup.c excludeFiles) plus the
// leftovers of earlier backups and restores, and the signal files (a
// restore writes its own recovery.signal; a copied standby.signal would
// turn the restored cluster into a standby that never promotes).
var topLevelSkippedFiles = map[string]bool{
	"postmaster.pid":           true,
	"postmaster.opts":          true,
	"postgresql.auto.conf.tmp": true,
	"current_logfiles":         true,
	"current_logfiles.tmp":     true,
	"backup_label":             true,
	"backup_label.old":         true,
	"tablespace_map":           true,
	"tablespace_map.old":       true,
	"backup_manifest":          true,
	"backup_manifest.tmp":      true,
	"recovery.signal":          true,
	"standby.signal":           true,
	"recovery.conf":            true,
	"recovery.done":            true,
	RestoreConfigFile:          true,
}

// emptiedDirs are directories directly in PGDATA whose contents PostgreSQL
// removes or recreates at startup (basebackup.c excludeDirContents). pg_wal
// is handled apart: its segments come from the archive, and its
// archive_status directory is kept.
var emptiedDirs = map[string]bool{
	"pg_stat_tmp":  true,
	"pg_replslot":  true,
	"pg_dynshmem":  true,
	"pg_notify":    true,
	"pg_serial":    true,
	"pg_snapshots": true,
	"pg_subtrans":  true,
}

// tempFilePrefix starts the names of temporary files and directories
// (base/pgsql_tmp, <tablespace>/PG_15_*/pgsql_tmp).
const tempFilePrefix = "pgsql_tmp"

// relcacheInitFile starts the name of the relation cache init file
// (global/pg_internal.init, <database dir>/pg_internal.init), rebuilt at
// startup.
const relcacheInitFile = "pg_internal.init"

// BackupRule says what a base backup does with the entry name in directory
// dir. dir is the PGDATA-relative, slash-separated path of the directory
// ("" for PGDATA itself; tablespace contents appear under
// pg_tblspc/<oid>/...), isDir tells whether the entry is a directory (after
// following a symbolic link), and siblings holds every name in dir, which
// is how an unlogged relation is recognised: its <relfilenode>_init fork
// exists.
//
// Every rule is tied to an exact location, never to a base name or a
// substring wherever it appears (TRAPS.md 13): a directory called "log" or a
// file called "postmaster.pid" deeper in the tree is backed up.
//
// Left out, following PostgreSQL's documentation and basebackup.c:
//   - the contents of pg_wal (except the empty archive_status directory),
//     pg_stat_tmp, pg_replslot, pg_dynshmem, pg_notify, pg_serial,
//     pg_snapshots and pg_subtrans (the directories themselves are kept);
//   - postmaster.pid, postmaster.opts, postgresql.auto.conf.tmp,
//     current_logfiles(.tmp), backup_label(.old), tablespace_map(.old),
//     backup_manifest(.tmp), recovery.signal, standby.signal, recovery.conf,
//     recovery.done and walrus-restore.yaml, directly in PGDATA;
//   - pg_internal.init* in global/ and in database directories;
//   - pgsql_tmp* in base/ and in a tablespace's version directory;
//   - temporary relations (t<backend>_<relfilenode>...) and every fork of an
//     unlogged relation except its init fork, in database directories;
//   - anything in pg_tblspc/<oid>/ other than the PG_15_* version directory.
func BackupRule(dir, name string, isDir bool, siblings map[string]bool) BackupAction {
	switch {
	case dir == "":
		if isDir {
			if emptiedDirs[name] {
				return BackupEmptyDir
			}
			return BackupInclude
		}
		if topLevelSkippedFiles[name] {
			return BackupSkip
		}
		return BackupInclude
	case dir == "pg_wal":
		if isDir && name == "archive_status" {
			return BackupEmptyDir
		}
		return BackupSkip
	case dir == "global":
		if !isDir && strings.HasPrefix(name, relcacheInitFile) {
			return BackupSkip
		}
		return BackupInclude
	case dir == "base":
		if strings.HasPrefix(name, tempFilePrefix) {
			return BackupSkip
		}
		return BackupInclude
	}
	if _, ok := tablespaceRoot(dir); ok {
		if isDir && isVersionDir(name) {
			return BackupInclude
		}
		return BackupSkip
	}
	if isTablespaceVersionDir(dir) {
		if strings.HasPrefix(name, tempFilePrefix) {
			return BackupSkip
		}
		return BackupInclude
	}
	if IsDatabaseDir(dir) && !isDir {
		return databaseFileRule(name, siblings)
	}
	return BackupInclude
}

// databaseFileRule decides for a file in a database directory.
func databaseFileRule(name string, siblings map[string]bool) BackupAction {
	if strings.HasPrefix(name, relcacheInitFile) {
		return BackupSkip
	}
	if IsTempRelationName(name) {
		return BackupSkip
	}
	node, fork, ok := splitRelName(name)
	if !ok || fork == ForkInit {
		return BackupInclude
	}
	if siblings[node+"_"+ForkInit] {
		// An unlogged relation: only its init fork is backed up;
		// PostgreSQL rebuilds the main fork from it at the end of recovery.
		return BackupSkip
	}
	return BackupInclude
}

// IsDatabaseDir reports whether dir (PGDATA-relative, slash-separated) is a
// database directory: base/<dboid> or pg_tblspc/<spcoid>/PG_15_<cat>/<dboid>.
func IsDatabaseDir(dir string) bool {
	parts := strings.Split(dir, "/")
	switch {
	case len(parts) == 2 && parts[0] == "base":
		_, ok := parseOID(parts[1])
		return ok
	case len(parts) == 4 && parts[0] == "pg_tblspc":
		_, ok1 := parseOID(parts[1])
		_, ok2 := parseOID(parts[3])
		return ok1 && isVersionDir(parts[2]) && ok2
	}
	return false
}

// TablespaceLinkOID reports whether rel is a tablespace link,
// pg_tblspc/<oid>, and returns the OID.
func TablespaceLinkOID(rel string) (uint32, bool) { return tablespaceRoot(rel) }

// tablespaceRoot reports whether dir is pg_tblspc/<oid>.
func tablespaceRoot(dir string) (uint32, bool) {
	rest, ok := strings.CutPrefix(dir, "pg_tblspc/")
	if !ok || strings.Contains(rest, "/") {
		return 0, false
	}
	return parseOID(rest)
}

// isTablespaceVersionDir reports whether dir is pg_tblspc/<oid>/PG_15_<cat>.
func isTablespaceVersionDir(dir string) bool {
	parts := strings.Split(dir, "/")
	if len(parts) != 3 || parts[0] != "pg_tblspc" {
		return false
	}
	_, ok := parseOID(parts[1])
	return ok && isVersionDir(parts[2])
}

// isVersionDir reports whether name is PG_15_<catalog version>.
func isVersionDir(name string) bool {
	cat, ok := strings.CutPrefix(name, tablespaceVersionPrefix)
	return ok && allDigits(cat)
}

// IsTempRelationName reports whether name, a file in a database directory,
// belongs to a temporary relation: t<backend>_<relfilenode>, then an
// optional _<fork> and .<segment>.
func IsTempRelationName(name string) bool {
	rest, ok := strings.CutPrefix(name, "t")
	if !ok {
		return false
	}
	backend, rest, ok := strings.Cut(rest, "_")
	if !ok || !allDigits(backend) {
		return false
	}
	_, _, ok = splitRelName(rest)
	return ok
}

// splitRelName splits <relfilenode>[_<fork>][.<segment>] and reports
// whether name has that form.
func splitRelName(name string) (node, fork string, ok bool) {
	base, seg, hasSeg := strings.Cut(name, ".")
	if hasSeg && !allDigits(seg) {
		return "", "", false
	}
	node, fork, hasFork := strings.Cut(base, "_")
	if hasFork {
		switch fork {
		case ForkFSM, ForkVM, ForkInit:
		default:
			return "", "", false
		}
	}
	if !allDigits(node) {
		return "", "", false
	}
	return node, fork, true
}
