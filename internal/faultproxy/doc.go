// Package faultproxy is a test harness: a small HTTP reverse proxy to put
// in front of a real server (the S3 server of internal/s3test) that
// injects the network and server faults object stores produce, at a
// seeded rate, and counts them.
//
// Words used here:
//   - fault: what the proxy does to one request instead of relaying it
//     faithfully (Kind): an S3 error response (503 SlowDown by default,
//     or any status and code, e.g. 403 AccessDenied for permanent
//     faults), a connection reset while the request body arrives, a reset
//     or a clean close partway through the response body (a truncated
//     response), a response lost after the request took effect, a delay.
//   - resource: a method and a URL; MaxInARow bounds the faults injected
//     in a row into one resource, so a client that retries enough always
//     gets through and a test does not depend on luck.
//
// The proxy keeps each request's Host header when it forwards it, so AWS
// SigV4 signatures made for the proxy's address verify at the target.
// Resets are real TCP resets (SO_LINGER 0 on a hijacked connection);
// clients see ECONNRESET, an unexpected EOF or a short body, as they would
// on a real network.
//
//	srv := s3test.Start(t)
//	p := faultproxy.Start(t, srv.Endpoint, faultproxy.Options{Seed: 1, Rate: 0.1})
//	// point the S3 client at p.URL(); afterwards p.Faults() > 0
package faultproxy
