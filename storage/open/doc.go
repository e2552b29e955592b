// Package open turns a repository URL (WALRUS_REPO) into a storage.Store.
//
// Accepted forms:
//
//	s3://bucket/prefix       S3; the prefix may be empty or several levels
//	file:///absolute/path    the filesystem store
//	/absolute/path           the same, as a plain path
//
// Anything else is an error that names the value and lists these forms.
// Credentials never belong in the URL: an s3:// URL with a user or a
// password, or with a query, is refused, and Describe strips them from
// whatever it is given, so its result is safe to print and log.
package open
