package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/walrusdb/walrus/compress"
)

// Config is walrus's whole configuration, validated.
type Config struct {
	// Source is the file the configuration was read from, or "".
	Source string `yaml:"-" json:"-"`
	// Warnings are problems Load found that do not stop walrus, e.g. a
	// file holding secrets that others may read; the caller prints them.
	Warnings []string `yaml:"-" json:"-"`

	// Repo is the repository: file:///abs/path, /abs/path or s3://bucket/prefix.
	Repo string `yaml:"repo"`
	// Compression is the codec for new objects.
	Compression string `yaml:"compression"`
	// CompressionLevel is the codec's level; 0 means the codec's default.
	CompressionLevel int `yaml:"compression_level"`
	// Encryption selects age encryption of every object.
	Encryption Encryption `yaml:"encryption"`
	// S3 holds settings for s3:// repositories.
	S3 S3 `yaml:"s3"`
	// PGData is the cluster's data directory (falls back to $PGDATA).
	PGData string `yaml:"pgdata"`
	// Postgres holds the connection settings.
	Postgres Postgres `yaml:"postgres"`
	// UploadConcurrency bounds parallel uploads of backup parts.
	UploadConcurrency int `yaml:"upload_concurrency"`
	// DownloadConcurrency bounds parallel downloads of backup parts.
	DownloadConcurrency int `yaml:"download_concurrency"`
	// PartSize is the uncompressed size at which a backup tar part is cut.
	PartSize int64 `yaml:"part_size"`
	// DeltaMaxSteps is the longest delta chain; 0 means always full backups.
	DeltaMaxSteps int `yaml:"delta_max_steps"`
	// BackupRateLimit caps how fast backup-push reads the data directory,
	// in bytes per second; 0 means no limit.
	BackupRateLimit int64 `yaml:"backup_rate_limit"`
	// WALPushConcurrency bounds parallel uploads of ready WAL segments.
	WALPushConcurrency int `yaml:"wal_push_concurrency"`
	// WALPushAsync makes wal-push start a wal-push-daemon for the cluster
	// when none answers, and hand its file to it (the daemon exits after
	// WALPushAsyncIdle without a request).
	WALPushAsync bool `yaml:"wal_push_async"`
	// WALPushAsyncIdle is how long a daemon started by wal-push waits for
	// the next request before it exits.
	WALPushAsyncIdle time.Duration `yaml:"wal_push_async_idle"`
	// LockWait is how long backup-push, backup-mark and delete wait for a
	// conflicting repository lock (repo.AcquireLock) before they fail.
	LockWait time.Duration `yaml:"lock_wait"`
	// BackupWALTimeout is how long backup-push waits, after
	// pg_backup_stop, for the WAL from the backup's start to its stop to
	// be in the repository before it fails (TRAPS.md 14).
	BackupWALTimeout time.Duration `yaml:"backup_wal_timeout"`
	// WALPrefetch is how many following segments wal-fetch downloads ahead.
	WALPrefetch int `yaml:"wal_prefetch"`
	// PrefetchDir is where prefetched segments wait (outside PGDATA).
	PrefetchDir string `yaml:"prefetch_dir"`
	// Retry says how storage calls that fail for a transient reason are
	// retried.
	Retry Retry `yaml:"retry"`
	// CommandTimeout bounds a whole command, from the moment its
	// configuration is loaded; 0 means no limit.
	CommandTimeout time.Duration `yaml:"command_timeout"`
}

// Retry says how storage calls are retried (see storage/retry).
type Retry struct {
	// MaxAttempts is the most attempts of one storage call, the first
	// included; 1 means no retries.
	MaxAttempts int `yaml:"max_attempts"`
	// CallTimeout bounds one attempt of a storage call without a body
	// (stat, delete, the next list entry, opening a download and each read
	// of it); 0 means no limit. Uploads are not bounded by it.
	CallTimeout time.Duration `yaml:"call_timeout"`
}

// Encryption selects age encryption.
type Encryption struct {
	// Recipients are age X25519 recipients ("age1..."); objects are encrypted
	// to all of them.
	Recipients []string `yaml:"recipients"`
	// RecipientsFile holds more recipients, one per line.
	RecipientsFile string `yaml:"recipients_file"`
	// IdentityFile is the age identity that decrypts (needed to restore).
	IdentityFile string `yaml:"identity_file"`
}

// Enabled reports whether any encryption setting is present.
func (e Encryption) Enabled() bool {
	return len(e.Recipients) > 0 || e.RecipientsFile != "" || e.IdentityFile != ""
}

// S3 holds settings for S3 repositories. Empty values fall back to the AWS
// SDK's own environment and credential chain.
type S3 struct {
	Endpoint        string `yaml:"endpoint"`
	Region          string `yaml:"region"`
	ForcePathStyle  bool   `yaml:"force_path_style"`
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	// PartSize is the multipart upload part size in bytes (0: default).
	PartSize int64 `yaml:"part_size"`
	// Concurrency is the number of parts of one object uploaded at once.
	Concurrency int `yaml:"concurrency"`
}

// Postgres holds the connection to the running cluster.
type Postgres struct {
	// DSN is a libpq connection string or URL; empty means the PG*
	// environment variables.
	DSN string `yaml:"dsn"`
}

// Defaults used when neither file nor environment set a value.
const (
	DefaultPartSize      = 1 << 30
	DefaultDeltaMaxSteps = 6
	DefaultWALPrefetch   = 8
	// DefaultLockWait is lock_wait's default: long enough for a delete to
	// finish, far shorter than a backup.
	DefaultLockWait = 5 * time.Minute
	// DefaultBackupWALTimeout is backup_wal_timeout's default: an
	// archiver with a backlog has time to catch up; a failing one is
	// reported within minutes.
	DefaultBackupWALTimeout = 5 * time.Minute
	// DefaultRetryMaxAttempts and DefaultRetryCallTimeout are the retry
	// section's defaults.
	DefaultRetryMaxAttempts = 5
	DefaultRetryCallTimeout = time.Minute
)

// defaults returns a Config holding every default.
func defaults() Config {
	return Config{
		Compression:         compress.DefaultName,
		UploadConcurrency:   4,
		DownloadConcurrency: 4,
		PartSize:            DefaultPartSize,
		DeltaMaxSteps:       DefaultDeltaMaxSteps,
		WALPushConcurrency:  4,
		WALPrefetch:         DefaultWALPrefetch,
		WALPushAsyncIdle:    time.Minute,
		LockWait:            DefaultLockWait,
		BackupWALTimeout:    DefaultBackupWALTimeout,
		Retry:               Retry{MaxAttempts: DefaultRetryMaxAttempts, CallTimeout: DefaultRetryCallTimeout},
	}
}

// LookupFunc looks up an environment variable; os.LookupEnv is one.
type LookupFunc func(string) (string, bool)

// envVar binds one environment variable to a config key.
type envVar struct {
	name string // WALRUS_...
	key  string // YAML key path
	set  func(c *Config, v string) error
}

var envVars = []envVar{
	{"WALRUS_REPO", "repo", func(c *Config, v string) error { c.Repo = v; return nil }},
	{"WALRUS_COMPRESSION", "compression", func(c *Config, v string) error { c.Compression = v; return nil }},
	{"WALRUS_COMPRESSION_LEVEL", "compression_level", setInt(func(c *Config) *int { return &c.CompressionLevel })},
	{"WALRUS_AGE_RECIPIENTS", "encryption.recipients", func(c *Config, v string) error {
		c.Encryption.Recipients = splitList(v)
		return nil
	}},
	{"WALRUS_AGE_RECIPIENTS_FILE", "encryption.recipients_file", func(c *Config, v string) error { c.Encryption.RecipientsFile = v; return nil }},
	{"WALRUS_AGE_IDENTITY_FILE", "encryption.identity_file", func(c *Config, v string) error { c.Encryption.IdentityFile = v; return nil }},
	{"WALRUS_S3_ENDPOINT", "s3.endpoint", func(c *Config, v string) error { c.S3.Endpoint = v; return nil }},
	{"WALRUS_S3_REGION", "s3.region", func(c *Config, v string) error { c.S3.Region = v; return nil }},
	{"WALRUS_S3_FORCE_PATH_STYLE", "s3.force_path_style", setBool(func(c *Config) *bool { return &c.S3.ForcePathStyle })},
	{"WALRUS_S3_ACCESS_KEY_ID", "s3.access_key_id", func(c *Config, v string) error { c.S3.AccessKeyID = v; return nil }},
	{"WALRUS_S3_SECRET_ACCESS_KEY", "s3.secret_access_key", func(c *Config, v string) error { c.S3.SecretAccessKey = v; return nil }},
	{"WALRUS_S3_PART_SIZE", "s3.part_size", setInt64(func(c *Config) *int64 { return &c.S3.PartSize })},
	{"WALRUS_S3_CONCURRENCY", "s3.concurrency", setInt(func(c *Config) *int { return &c.S3.Concurrency })},
	{"WALRUS_PGDATA", "pgdata", func(c *Config, v string) error { c.PGData = v; return nil }},
	{"WALRUS_POSTGRES_DSN", "postgres.dsn", func(c *Config, v string) error { c.Postgres.DSN = v; return nil }},
	{"WALRUS_UPLOAD_CONCURRENCY", "upload_concurrency", setInt(func(c *Config) *int { return &c.UploadConcurrency })},
	{"WALRUS_DOWNLOAD_CONCURRENCY", "download_concurrency", setInt(func(c *Config) *int { return &c.DownloadConcurrency })},
	{"WALRUS_PART_SIZE", "part_size", setInt64(func(c *Config) *int64 { return &c.PartSize })},
	{"WALRUS_DELTA_MAX_STEPS", "delta_max_steps", setInt(func(c *Config) *int { return &c.DeltaMaxSteps })},
	{"WALRUS_BACKUP_RATE_LIMIT", "backup_rate_limit", setInt64(func(c *Config) *int64 { return &c.BackupRateLimit })},
	{"WALRUS_WAL_PUSH_CONCURRENCY", "wal_push_concurrency", setInt(func(c *Config) *int { return &c.WALPushConcurrency })},
	{"WALRUS_WAL_PUSH_ASYNC", "wal_push_async", setBool(func(c *Config) *bool { return &c.WALPushAsync })},
	{"WALRUS_WAL_PUSH_ASYNC_IDLE", "wal_push_async_idle", setDuration(func(c *Config) *time.Duration { return &c.WALPushAsyncIdle })},
	{"WALRUS_LOCK_WAIT", "lock_wait", setDuration(func(c *Config) *time.Duration { return &c.LockWait })},
	{"WALRUS_BACKUP_WAL_TIMEOUT", "backup_wal_timeout", setDuration(func(c *Config) *time.Duration { return &c.BackupWALTimeout })},
	{"WALRUS_WAL_PREFETCH", "wal_prefetch", setInt(func(c *Config) *int { return &c.WALPrefetch })},
	{"WALRUS_PREFETCH_DIR", "prefetch_dir", func(c *Config, v string) error { c.PrefetchDir = v; return nil }},
	{"WALRUS_RETRY_MAX_ATTEMPTS", "retry.max_attempts", setInt(func(c *Config) *int { return &c.Retry.MaxAttempts })},
	{"WALRUS_RETRY_CALL_TIMEOUT", "retry.call_timeout", setDuration(func(c *Config) *time.Duration { return &c.Retry.CallTimeout })},
	{"WALRUS_COMMAND_TIMEOUT", "command_timeout", setDuration(func(c *Config) *time.Duration { return &c.CommandTimeout })},
}

func setDuration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("want a duration such as 90s, 10m or 1h30m (0 for none), got %q", v)
		}
		*field(c) = d
		return nil
	}
}

func setBool(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		*field(c) = b
		return nil
	}
}

func setInt(field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("want an integer, got %q", v)
		}
		*field(c) = n
		return nil
	}
}

func setInt64(field func(*Config) *int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := parseSize(v)
		if err != nil {
			return err
		}
		*field(c) = n
		return nil
	}
}

// parseSize accepts a byte count with an optional K, M, G suffix (powers of
// 1024, with or without "iB"/"B").
func parseSize(v string) (int64, error) {
	s := strings.ToUpper(strings.TrimSpace(v))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a size such as 1073741824, 512MiB or 1G, got %q", v)
	}
	return n * mult, nil
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Error is a configuration problem tied to one key.
type Error struct {
	// Key is the YAML key, e.g. "s3.region".
	Key string
	// Env is the environment variable for the key, if any.
	Env string
	// Source says where the bad value came from (file path or env name).
	Source string
	// Msg says what is wrong and what to do.
	Msg string
}

func (e *Error) Error() string {
	name := e.Key
	if e.Env != "" {
		name += " (" + e.Env + ")"
	}
	if e.Source != "" {
		return fmt.Sprintf("config %s from %s: %s", name, e.Source, e.Msg)
	}
	return fmt.Sprintf("config %s: %s", name, e.Msg)
}

func envFor(key string) string {
	for _, v := range envVars {
		if v.key == key {
			return v.name
		}
	}
	return ""
}

func keyErr(key, msg string) error { return &Error{Key: key, Env: envFor(key), Msg: msg} }

// Load reads the configuration. path is the --config flag ("" for none);
// WALRUS_CONFIG names the file when path is empty. lookup reads the
// environment (os.LookupEnv in production; a map in tests).
func Load(path string, lookup LookupFunc) (*Config, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	c := defaults()
	if path == "" {
		path, _ = lookup("WALRUS_CONFIG")
	}
	if path != "" {
		if err := loadFile(&c, path); err != nil {
			return nil, err
		}
		c.Source = path
		c.Warnings = append(c.Warnings, exposed(path, "config file", c.secretKeys())...)
	}
	for _, v := range envVars {
		val, ok := lookup(v.name)
		if !ok || val == "" {
			continue
		}
		if err := v.set(&c, val); err != nil {
			return nil, &Error{Key: v.key, Env: v.name, Source: "environment", Msg: err.Error()}
		}
	}
	if c.PGData == "" {
		if v, ok := lookup("PGDATA"); ok {
			c.PGData = v
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Encryption.IdentityFile != "" {
		c.Warnings = append(c.Warnings, exposed(c.Encryption.IdentityFile, "age identity file", []string{"the key that decrypts every backup"})...)
	}
	return &c, nil
}

// secretKeys names the settings of c that hold secrets.
func (c *Config) secretKeys() []string {
	var keys []string
	if c.S3.SecretAccessKey != "" {
		keys = append(keys, "s3.secret_access_key")
	}
	if c.Postgres.DSN != "" && RedactDSN(c.Postgres.DSN) != c.Postgres.DSN {
		keys = append(keys, "the password in postgres.dsn")
	}
	return keys
}

// exposed warns when the file at path, holding secrets, can be read by its
// group or by others (as libpq warns about a password file). A file that
// cannot be examined gets no warning: reading it reports the problem.
func exposed(path, what string, secrets []string) []string {
	if len(secrets) == 0 {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s %s holds %s and can be read by users other than its owner (mode %04o): chmod 600 %s",
		what, path, strings.Join(secrets, " and "), fi.Mode().Perm(), path)}
}

var unknownField = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`field (\S+) not found in type config\.(\w+)`) }) // compiled on first use, not at every process start

// sectionOf maps the Go type in a yaml "field not found" error to its YAML
// section, so the error can name the full key.
var sectionOf = map[string]string{"Config": "", "Encryption": "encryption.", "S3": "s3.", "Postgres": "postgres.", "Retry": "retry."}

func loadFile(c *Config, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file %s: %w (check --config or WALRUS_CONFIG)", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		if m := unknownField().FindStringSubmatch(err.Error()); m != nil {
			key := sectionOf[m[2]] + m[1]
			return fmt.Errorf("config file %s: unknown key %q: remove it or fix its spelling (walrus config show lists the keys)", path, key)
		}
		return fmt.Errorf("config file %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return nil
}

// Validate checks every value and reports the first problem, naming its key.
func (c *Config) Validate() error {
	if c.Repo == "" {
		return keyErr("repo", "missing: set the repository, e.g. repo: /var/lib/walrus or s3://bucket/prefix")
	}
	if err := validateRepo(c.Repo); err != nil {
		return keyErr("repo", err.Error())
	}
	if _, err := compress.ByName(c.Compression); err != nil {
		return keyErr("compression", fmt.Sprintf("unknown codec %q: use one of %s", c.Compression, strings.Join(compress.Names(), ", ")))
	}
	if err := compress.ValidateLevel(c.Compression, c.CompressionLevel); err != nil {
		return keyErr("compression_level", err.Error())
	}
	for _, r := range c.Encryption.Recipients {
		if !strings.HasPrefix(r, "age1") {
			return keyErr("encryption.recipients", fmt.Sprintf("%q is not an age X25519 recipient (age1...): create one with walrus keygen", r))
		}
	}
	for _, f := range []struct{ key, path string }{
		{"encryption.recipients_file", c.Encryption.RecipientsFile},
		{"encryption.identity_file", c.Encryption.IdentityFile},
		{"pgdata", c.PGData},
		{"prefetch_dir", c.PrefetchDir},
	} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return keyErr(f.key, fmt.Sprintf("%q is not an absolute path: give the full path", f.path))
		}
	}
	if c.S3.Endpoint != "" {
		u, err := url.Parse(c.S3.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return keyErr("s3.endpoint", fmt.Sprintf("%q is not an http(s) URL, e.g. https://s3.example.com", c.S3.Endpoint))
		}
	}
	if (c.S3.AccessKeyID == "") != (c.S3.SecretAccessKey == "") {
		return keyErr("s3.secret_access_key", "s3.access_key_id and s3.secret_access_key must be set together (or neither, to use the AWS credential chain)")
	}
	for _, n := range []struct {
		key string
		v   int64
		min int64
	}{
		{"compression_level", int64(c.CompressionLevel), 0},
		{"upload_concurrency", int64(c.UploadConcurrency), 1},
		{"download_concurrency", int64(c.DownloadConcurrency), 1},
		{"part_size", c.PartSize, 1 << 20},
		{"delta_max_steps", int64(c.DeltaMaxSteps), 0},
		{"backup_rate_limit", c.BackupRateLimit, 0},
		{"wal_push_concurrency", int64(c.WALPushConcurrency), 1},
		{"wal_prefetch", int64(c.WALPrefetch), 0},
		{"s3.part_size", c.S3.PartSize, 0},
		{"s3.concurrency", int64(c.S3.Concurrency), 0},
	} {
		if n.v < n.min {
			return keyErr(n.key, fmt.Sprintf("%d is below the minimum %d", n.v, n.min))
		}
	}
	if c.S3.PartSize != 0 && c.S3.PartSize < 5<<20 {
		return keyErr("s3.part_size", "S3 multipart parts must be at least 5 MiB (5242880)")
	}
	if c.Retry.MaxAttempts < 1 || c.Retry.MaxAttempts > 100 {
		return keyErr("retry.max_attempts", fmt.Sprintf("%d is out of range: use 1 (no retries) to 100", c.Retry.MaxAttempts))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"retry.call_timeout", c.Retry.CallTimeout}, {"command_timeout", c.CommandTimeout}, {"lock_wait", c.LockWait}} {
		if d.v < 0 {
			return keyErr(d.key, fmt.Sprintf("%v is negative: give a duration such as 10m, or 0 for none", d.v))
		}
	}
	if c.BackupWALTimeout < time.Second {
		return keyErr("backup_wal_timeout", fmt.Sprintf("%v is too short: give a duration of at least 1s, such as 5m", c.BackupWALTimeout))
	}
	if c.WALPushAsyncIdle < time.Second {
		return keyErr("wal_push_async_idle", fmt.Sprintf("%v is too short: give a duration of at least 1s, such as 1m", c.WALPushAsyncIdle))
	}
	if c.UploadConcurrency > 256 || c.DownloadConcurrency > 256 || c.WALPushConcurrency > 256 {
		return keyErr("upload_concurrency", "concurrency settings above 256 are refused")
	}
	return nil
}

func validateRepo(repo string) error {
	switch {
	case strings.HasPrefix(repo, "s3://"):
		u, err := url.Parse(repo)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%q: want s3://bucket/prefix", repo)
		}
		if u.User != nil {
			return fmt.Errorf("s3 URL must not hold credentials: use s3.access_key_id or the AWS credential chain")
		}
	case strings.HasPrefix(repo, "file://"):
		u, err := url.Parse(repo)
		if err != nil || u.Host != "" || !filepath.IsAbs(u.Path) {
			return fmt.Errorf("%q: want file:///absolute/path", repo)
		}
	case filepath.IsAbs(repo):
	default:
		return fmt.Errorf("%q: want file:///abs/path, /abs/path or s3://bucket/prefix", repo)
	}
	return nil
}

// Setting is one configuration key with the value walrus uses, as config
// show prints it.
type Setting struct {
	// Key is the key in the configuration file, dotted for nested keys
	// ("s3.endpoint").
	Key string `json:"key"`
	// Value is the value in the form the file and the environment take
	// it, with secrets masked as *** (and a DSN's password).
	Value string `json:"value"`
	// Env is the environment variable that overrides the key; "" for
	// none.
	Env string `json:"env,omitempty"`
}

// Settings returns every setting, sorted by key, with the value walrus
// uses and secrets masked.
func (c *Config) Settings() []Setting {
	values := map[string]string{
		"repo":                       c.Repo,
		"compression":                c.Compression,
		"compression_level":          strconv.Itoa(c.CompressionLevel),
		"encryption.recipients":      strings.Join(c.Encryption.Recipients, ","),
		"encryption.recipients_file": c.Encryption.RecipientsFile,
		"encryption.identity_file":   c.Encryption.IdentityFile,
		"s3.endpoint":                c.S3.Endpoint,
		"s3.region":                  c.S3.Region,
		"s3.force_path_style":        strconv.FormatBool(c.S3.ForcePathStyle),
		"s3.access_key_id":           c.S3.AccessKeyID,
		"s3.secret_access_key":       mask(c.S3.SecretAccessKey),
		"s3.part_size":               strconv.FormatInt(c.S3.PartSize, 10),
		"s3.concurrency":             strconv.Itoa(c.S3.Concurrency),
		"pgdata":                     c.PGData,
		"postgres.dsn":               RedactDSN(c.Postgres.DSN),
		"upload_concurrency":         strconv.Itoa(c.UploadConcurrency),
		"download_concurrency":       strconv.Itoa(c.DownloadConcurrency),
		"part_size":                  strconv.FormatInt(c.PartSize, 10),
		"delta_max_steps":            strconv.Itoa(c.DeltaMaxSteps),
		"backup_rate_limit":          strconv.FormatInt(c.BackupRateLimit, 10),
		"wal_push_concurrency":       strconv.Itoa(c.WALPushConcurrency),
		"wal_prefetch":               strconv.Itoa(c.WALPrefetch),
		"wal_push_async":             strconv.FormatBool(c.WALPushAsync),
		"wal_push_async_idle":        c.WALPushAsyncIdle.String(),
		"lock_wait":                  c.LockWait.String(),
		"backup_wal_timeout":         c.BackupWALTimeout.String(),
		"prefetch_dir":               c.PrefetchDir,
		"retry.max_attempts":         strconv.Itoa(c.Retry.MaxAttempts),
		"retry.call_timeout":         c.Retry.CallTimeout.String(),
		"command_timeout":            c.CommandTimeout.String(),
	}
	out := make([]Setting, 0, len(values))
	for k, v := range values {
		out = append(out, Setting{Key: k, Value: v, Env: envFor(k)})
	}
	slices.SortFunc(out, func(a, b Setting) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Redacted returns the settings (Settings) as YAML-like text, one key a
// line with the environment variable that overrides it, headed by where
// they come from.
func (c *Config) Redacted() string {
	var b strings.Builder
	if c.Source != "" {
		fmt.Fprintf(&b, "# from %s, overridden by WALRUS_* environment variables\n", c.Source)
	} else {
		b.WriteString("# no config file; values from WALRUS_* environment variables and defaults\n")
	}
	for _, st := range c.Settings() {
		if st.Env != "" {
			fmt.Fprintf(&b, "%-28s %-40s # %s\n", st.Key+":", quoteIfEmpty(st.Value), st.Env)
		} else {
			fmt.Fprintf(&b, "%-28s %s\n", st.Key+":", quoteIfEmpty(st.Value))
		}
	}
	return b.String()
}

func quoteIfEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

func mask(s string) string {
	if s == "" {
		return ""
	}
	return "***"
}

var dsnPassword = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`) }) // compiled on first use, not at every process start

// RedactDSN masks the password in a libpq keyword/value string or URL.
func RedactDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "***"
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxx")
			u.RawQuery = q.Encode()
		}
		return strings.ReplaceAll(u.String(), "xxx", "***")
	}
	return dsnPassword().ReplaceAllString(dsn, "${1}***")
}

// Secrets returns the secret values held by the configuration, so callers
// (and tests) can make sure none of them is ever printed.
func (c *Config) Secrets() []string {
	var s []string
	if c.S3.SecretAccessKey != "" {
		s = append(s, c.S3.SecretAccessKey)
	}
	if c.Postgres.DSN != "" && RedactDSN(c.Postgres.DSN) != c.Postgres.DSN {
		s = append(s, c.Postgres.DSN)
	}
	return s
}
