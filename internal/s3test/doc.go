// Package s3test runs a real S3 server for tests: Versity's S3 gateway
// (versitygw) serving a temporary directory with its posix backend.
//
// Words used here:
//   - server: one versitygw process listening on 127.0.0.1 at a free port,
//     with random root credentials, stopped and its directory removed when
//     the test that started it ends.
//   - bucket: a fresh bucket per test, made with NewBucket, so tests that
//     share a server never see each other's objects.
//
// The binary is looked up in $VERSITYGW, then in PATH, then in each
// GOPATH's bin directory (~/go/bin by default). A missing binary, or a
// server that does not come up, fails the test with a message saying how to
// install it: tests never skip because versitygw is absent.
//
//	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// Starting a server takes a fraction of a second; a test package normally
// starts one in its top-level test and gives every subtest its own bucket.
package s3test
