package s3test_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walrusdb/walrus/internal/s3test"
)

func TestStart(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	if !strings.HasPrefix(srv.Endpoint, "http://127.0.0.1:") {
		t.Fatalf("Endpoint = %q, want http://127.0.0.1:PORT", srv.Endpoint)
	}
	b1, b2 := srv.NewBucket(t), srv.NewBucket(t)
	if b1 == b2 {
		t.Fatalf("NewBucket returned %q twice", b1)
	}
	ctx := t.Context()
	_, err := srv.Client().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b1), Key: aws.String("k"), Body: strings.NewReader("v")})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	out, err := srv.Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(b2)})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(out.Contents) != 0 {
		t.Fatalf("a new bucket holds %d objects", len(out.Contents))
	}
	// Unsigned requests are refused: the credentials are real.
	resp, err := http.Get(srv.Endpoint + "/" + b1 + "/k")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("anonymous GET succeeded")
	}
	env := srv.Env(b1)
	for _, want := range []string{
		"AWS_ACCESS_KEY_ID=" + srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + srv.SecretKey,
		"AWS_REGION=" + srv.Region,
		"AWS_ENDPOINT_URL_S3=" + srv.Endpoint,
		"WALRUS_REPO=s3://" + b1 + "/" + s3test.RepoPrefix,
		"WALRUS_S3_FORCE_PATH_STYLE=true",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("Env lacks %q: %q", want, env)
		}
	}
}

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t, s3test.KeepAlive())
	srv.NewBucket(t)
}
