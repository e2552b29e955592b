// Package setup is walrus's configuration management: it writes the
// walrus configuration file of a cluster and configures PostgreSQL to
// archive through walrus (walrus setup), and it verifies end to end that
// archiving works (walrus check).
//
// Words used here:
//   - walrus configuration: the YAML file of package config that
//     archive_command and restore_command name with --config. By default
//     it is DefaultConfigPath(pgdata), walrus-<name>.yaml next to the data
//     directory: per cluster, outside the data directory (base backups do
//     not carry it; a restore keeps it).
//   - server's OS user: the owner of the data directory, the user that
//     PostgreSQL and so archive_command run as. Files setup creates as root
//     (the configuration, a generated identity, a new filesystem
//     repository directory) are given to this user.
//   - running: postmaster.pid in the data directory names a live process.
//     A running server is configured with ALTER SYSTEM (and
//     pg_reload_conf()); walrus must reach that very server (its
//     data_directory is compared). A stopped cluster is configured by
//     editing postgresql.auto.conf as ALTER SYSTEM would.
//   - configured value: what the configuration files say (pg_file_settings
//     when running; postgresql.conf with its includes, then
//     postgresql.auto.conf, when stopped). Setup compares configured
//     values, so a second run after a change that still waits for a
//     restart changes nothing.
//
// Invariants:
//   - Setup asks nothing and never overwrites: an existing configuration
//     file or identity is left as it is (differences from the flags are
//     reported). A second run changes nothing and says so.
//   - It only raises: archive_mode becomes on unless it is on or always;
//     wal_level becomes replica only when it is below (logical is kept).
//     archive_command and restore_command name this binary (os.Executable,
//     symbolic links resolved) and the configuration by absolute paths,
//     shell-quoted and with '%' doubled; values are written quoted as
//     ALTER SYSTEM writes them (quotes and backslashes doubled).
//   - The configuration file is created 0600 (it may hold secrets),
//     create-only, fsynced.
//   - Check changes no setting. Its only writes are a probe object under
//     ProbePrefix (check/, never taken for WAL or a backup), deleted again,
//     and one WAL switch. It reports every failure with its fix; the WAL
//     switch is tried only when nothing else failed.
package setup
