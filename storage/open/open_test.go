package open

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walrusdb/walrus/internal/s3test"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/fs"
	"github.com/walrusdb/walrus/storage/s3"
)

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		repo string
		kind kind
		loc  location
	}{
		{"s3://bucket", kindS3, location{bucket: "bucket"}},
		{"s3://bucket/", kindS3, location{bucket: "bucket"}},
		{"s3://bucket/prefix", kindS3, location{bucket: "bucket", prefix: "prefix"}},
		{"s3://my.bucket/a/b/c/", kindS3, location{bucket: "my.bucket", prefix: "a/b/c"}},
		{"file:///var/lib/walrus", kindFS, location{path: "/var/lib/walrus"}},
		{"file://localhost/var/lib/walrus/", kindFS, location{path: "/var/lib/walrus"}},
		{"file:///with%20space", kindFS, location{path: "/with space"}},
		{"/var/lib/walrus", kindFS, location{path: "/var/lib/walrus"}},
		{"/var/lib/../walrus/", kindFS, location{path: "/var/walrus"}},
	} {
		k, loc, err := parse(tc.repo)
		if err != nil || k != tc.kind || loc != tc.loc {
			t.Errorf("parse(%q) = %v, %+v, %v; want %v, %+v", tc.repo, k, loc, err, tc.kind, tc.loc)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, repo := range []string{
		"",
		"relative/path",
		"./repo",
		"~/repo",
		"S3://bucket", // schemes are case-sensitive here; say so rather than guess
		"s3:bucket",
		"s3://",
		"s3:///prefix",
		"s3://key:secret@bucket/prefix",
		"s3://bucket/prefix?region=x",
		"s3://bucket/a//b",
		"s3://bucket/.hidden",
		"file://relative",
		"file://host/path",
		"file:relative",
		"gs://bucket",
		"http://example.com/repo",
	} {
		_, _, err := parse(repo)
		if err == nil {
			t.Errorf("parse(%q) succeeded, want an error", repo)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "s3://bucket/prefix") || !strings.Contains(msg, "file:///") {
			t.Errorf("parse(%q) = %q: the error does not list the accepted forms", repo, msg)
		}
		if strings.Contains(msg, "secret") {
			t.Errorf("parse(%q) = %q: the error shows the credentials", repo, msg)
		}
		if repo != "" && !strings.Contains(msg, Describe(repo)) {
			t.Errorf("parse(%q) = %q: the error does not name the value", repo, msg)
		}
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/var/lib/walrus":                    "/var/lib/walrus",
		"file:///var/lib/walrus":             "file:///var/lib/walrus",
		"s3://bucket/prefix":                 "s3://bucket/prefix",
		"s3://AKIA:secret@bucket/prefix":     "s3://bucket/prefix",
		"s3://bucket/prefix?secret=1#frag":   "s3://bucket/prefix",
		"https://user:secret@host/x?token=1": "https://host/x",
		"s3:secret@bucket":                   "s3:...",
		"%zz:secret@bucket":                  "%zz...",
		"relative/path":                      "relative/path",
	} {
		if got := Describe(in); got != want {
			t.Errorf("Describe(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenFS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, repo := range []string{filepath.Join(dir, "a"), "file://" + filepath.Join(dir, "b")} {
		st, err := Open(t.Context(), repo, s3.Config{})
		if err != nil {
			t.Fatalf("Open(%q): %v", repo, err)
		}
		if _, ok := st.(*fs.Store); !ok {
			t.Fatalf("Open(%q) = %T, want *fs.Store", repo, st)
		}
		if err := st.Put(t.Context(), "k", strings.NewReader("v"), storage.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
}

func TestOpenS3(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t)
	cfg := s3.Config{
		Bucket:          "overridden",
		Prefix:          "overridden",
		Endpoint:        srv.Endpoint,
		Region:          srv.Region,
		ForcePathStyle:  true,
		AccessKeyID:     srv.AccessKey,
		SecretAccessKey: srv.SecretKey,
	}
	st, err := Open(t.Context(), "s3://"+bucket+"/some/prefix", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Put(t.Context(), "k", strings.NewReader("v"), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	out, err := srv.Client().HeadObject(t.Context(), headInput(bucket, "some/prefix/k"))
	if err != nil || out.ContentLength == nil || *out.ContentLength != 1 {
		t.Fatalf("object not at s3://%s/some/prefix/k: %v", bucket, err)
	}
}

func headInput(bucket, key string) *awss3.HeadObjectInput {
	return &awss3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
}
