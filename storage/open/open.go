package open

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/fs"
	"github.com/walrusdb/walrus/storage/s3"
)

// Forms lists the accepted repository forms, for error messages and help.
const Forms = "s3://bucket/prefix, file:///absolute/path or /absolute/path"

// Open opens the repository that repo names. For s3:// the bucket and the
// prefix come from the URL and override s3cfg's; the rest of s3cfg
// (endpoint, region, credentials, part size, ...) is used as given.
func Open(ctx context.Context, repo string, s3cfg s3.Config) (storage.Store, error) {
	kind, loc, err := parse(repo)
	if err != nil {
		return nil, err
	}
	switch kind {
	case kindS3:
		s3cfg.Bucket, s3cfg.Prefix = loc.bucket, loc.prefix
		st, err := s3.New(ctx, s3cfg)
		if err != nil {
			return nil, fmt.Errorf("open repository %s: %w", Describe(repo), err)
		}
		return st, nil
	default:
		st, err := fs.New(loc.path)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
}

type kind int

const (
	kindFS kind = iota
	kindS3
)

type location struct {
	path           string // kindFS
	bucket, prefix string // kindS3
}

func invalid(repo, why string) error {
	return fmt.Errorf("invalid repository %q: %s; use %s", Describe(repo), why, Forms)
}

func parse(repo string) (kind, location, error) {
	switch {
	case repo == "":
		return 0, location{}, fmt.Errorf("no repository given; use %s", Forms)
	case strings.HasPrefix(repo, "s3://"):
		u, err := url.Parse(repo)
		if err != nil {
			return 0, location{}, invalid(repo, "not a valid URL")
		}
		if u.User != nil {
			return 0, location{}, invalid(repo, "credentials do not belong in the URL (use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the config file)")
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return 0, location{}, invalid(repo, "unexpected query or fragment")
		}
		if u.Host == "" {
			return 0, location{}, invalid(repo, "no bucket")
		}
		prefix := strings.Trim(u.Path, "/")
		if prefix != "" {
			if err := storage.ValidatePrefix(prefix); err != nil {
				return 0, location{}, invalid(repo, err.Error())
			}
		}
		return kindS3, location{bucket: u.Host, prefix: prefix}, nil
	case strings.HasPrefix(repo, "file://"):
		u, err := url.Parse(repo)
		if err != nil {
			return 0, location{}, invalid(repo, "not a valid URL")
		}
		if u.Host != "" && u.Host != "localhost" {
			return 0, location{}, invalid(repo, "a file URL has three slashes before an absolute path")
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return 0, location{}, invalid(repo, "unexpected user, query or fragment")
		}
		if !filepath.IsAbs(u.Path) {
			return 0, location{}, invalid(repo, "the path must be absolute")
		}
		return kindFS, location{path: filepath.Clean(u.Path)}, nil
	case filepath.IsAbs(repo):
		return kindFS, location{path: filepath.Clean(repo)}, nil
	default:
		return 0, location{}, invalid(repo, "unrecognised form")
	}
}

// Describe returns repo in a form safe to print: any user, password, query
// or fragment is removed. It never fails; an unparsable value is shown up
// to its first character that could start credentials.
func Describe(repo string) string {
	if filepath.IsAbs(repo) {
		return repo
	}
	u, err := url.Parse(repo)
	if err != nil {
		if i := strings.IndexAny(repo, ":@?#"); i >= 0 {
			return repo[:i] + "..."
		}
		return repo
	}
	if u.Opaque != "" {
		// "scheme:rest" with no "//": rest may be anything.
		return u.Scheme + ":..."
	}
	u.User = nil
	u.RawQuery = ""
	u.ForceQuery = false
	u.Fragment = ""
	u.RawFragment = ""
	return u.String()
}
