package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"go/build"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/walrusdb/walrus/internal/pgtest"
)

// tlsServer is a versitygw on 127.0.0.1 serving HTTPS with a self-signed
// certificate, and --keep-alive: pgBackRest's S3 driver speaks only TLS,
// so both tools are measured on this endpoint. internal/s3test serves
// plain HTTP only.
type tlsServer struct {
	endpoint             string // https://127.0.0.1:PORT
	port                 int
	region               string
	accessKey, secretKey string
	caFile               string // the certificate, for AWS_CA_BUNDLE
	pid                  int
	client               *s3.Client
	buckets              int
}

// startTLSServer generates the certificate, starts the server and stops it
// when b ends.
func startTLSServer(b *testing.B) *tlsServer {
	b.Helper()
	dir := pgtest.SharedDir(b) // the certificate is read by wal-push, run as postgres
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := selfSignedCert(certFile, keyFile); err != nil {
		b.Fatalf("make a certificate: %v", err)
	}
	bin := os.Getenv("VERSITYGW")
	if bin == "" {
		if p, err := exec.LookPath("versitygw"); err == nil {
			bin = p
		} else {
			bin = filepath.Join(build.Default.GOPATH, "bin", "versitygw")
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &tlsServer{
		endpoint: fmt.Sprintf("https://127.0.0.1:%d", port), port: port, region: "us-east-1",
		accessKey: "bench" + randomHex(6), secretKey: randomHex(20), caFile: certFile,
	}
	data := b.TempDir()
	log, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "--access", s.accessKey, "--secret", s.secretKey, "--region", s.region,
		"--port", fmt.Sprintf("127.0.0.1:%d", port), "--cert", certFile, "--key", keyFile,
		"--quiet", "--keep-alive", "posix", data)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VGW_") && !strings.HasPrefix(kv, "ROOT_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v (install it with: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)", bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	s.pid = cmd.Process.Pid
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			out, _ := os.ReadFile(log.Name())
			b.Fatalf("versitygw with TLS exited at once:\n%s", out)
		default:
		}
		resp, err := hc.Get(s.endpoint)
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("versitygw with TLS does not answer on %s: %v", s.endpoint, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.client = s3.New(s3.Options{
		Region:                     s.region,
		BaseEndpoint:               aws.String(s.endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.accessKey, s.secretKey, ""),
		HTTPClient:                 hc,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	return s
}

// newBucket creates an empty bucket.
func (s *tlsServer) newBucket(b *testing.B) string {
	b.Helper()
	s.buckets++
	name := fmt.Sprintf("bench-%d-%s", s.buckets, randomHex(3))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		b.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// walrusEnv points walrus at bucket on this server, trusting its
// certificate through AWS_CA_BUNDLE (read by the AWS SDK itself).
func (s *tlsServer) walrusEnv(bucket string) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.accessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.secretKey,
		"AWS_REGION=" + s.region,
		"AWS_ENDPOINT_URL_S3=" + s.endpoint,
		"AWS_CA_BUNDLE=" + s.caFile,
		"AWS_EC2_METADATA_DISABLED=true",
		"WALRUS_REPO=s3://" + bucket + "/repo",
		"WALRUS_S3_FORCE_PATH_STYLE=true",
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and localhost, its
// own issuer, and its key.
func selfSignedCert(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "walrus benchmark"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
