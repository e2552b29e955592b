// Package pgtest runs throwaway PostgreSQL 15 clusters for integration
// tests.
//
// A cluster lives in its own temporary directory, listens on 127.0.0.1 on a
// port of its own and on a Unix socket in that directory, so tests may run
// in parallel, in one process or many. Cleanup stops the server, however the
// test ended, and removes the directory (set PGTEST_KEEP=1 to keep it).
//
// PostgreSQL refuses to run as root. When the tests run as root, the
// server, initdb, pg_ctl, pgbench and everything run through Command or
// RunAsPostgres run as the postgres OS user, so every directory they use
// must be reachable and, where they write, owned by that user: use
// SharedDir for archives, tablespaces and restore targets, and
// ChownPostgres for anything a test creates as root that PostgreSQL (or an
// archive_command) must write to.
//
// Processes run as postgres, the server included, get Env(): the test
// process's environment without PG*, WALRUS_* and AWS_* variables, so that
// a developer's settings never reach a test's archive_command. Tests pass
// what they need explicitly (Options.Env, RunAsPostgresEnv).
//
// Environment: PG_BINDIR overrides the directory of the PostgreSQL binaries
// (DefaultBinDir); PGTEST_KEEP keeps temporary directories for debugging.
package pgtest
