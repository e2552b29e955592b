// Package config loads walrus's one typed Config from a YAML file (given by
// --config or WALRUS_CONFIG) and WALRUS_* environment variables.
//
// Precedence, highest first: command-line flag, environment variable, file,
// default. Load validates everything once and reports the first problem with
// the name of the key (and of the environment variable) that holds it. Secret
// values (S3 secret key, passwords inside a DSN) are printed as "***" by
// Redacted; the age identity is never read into the Config at all, only its
// path.
package config
