// Package e2e holds end-to-end tests: the walrus binary driven the way an
// operator and PostgreSQL drive it, against real PostgreSQL 15 clusters and
// real storage (the filesystem repository and versitygw for S3).
package e2e
