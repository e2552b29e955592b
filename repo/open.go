package repo

import (
	"context"
	"fmt"

	"github.com/walrusdb/walrus/compress"
	"github.com/walrusdb/walrus/config"
	"github.com/walrusdb/walrus/crypto"
	"github.com/walrusdb/walrus/storage"
	"github.com/walrusdb/walrus/storage/open"
	"github.com/walrusdb/walrus/storage/retry"
	"github.com/walrusdb/walrus/storage/s3"
)

// Repo is an opened repository: its store and the object codec chain built
// once from the configuration.
type Repo struct {
	// Store is the backend, wrapped in the retry layer (storage/retry)
	// configured by the retry section.
	Store storage.Store
	// Encoder encodes new objects.
	Encoder *Encoder
	// Decoder decodes stored objects; its Decryptor is nil without an
	// identity.
	Decoder *Decoder
	// Description is the repository URL, safe to print.
	Description string
}

// Close closes the store.
func (r *Repo) Close() error { return r.Store.Close() }

// Open opens the repository that cfg names and builds the codec chain.
// Recipients come from encryption.recipients, encryption.recipients_file
// and, when neither is set, from the identity file itself.
func Open(ctx context.Context, cfg *config.Config) (*Repo, error) {
	codec, err := compress.ByName(cfg.Compression)
	if err != nil {
		return nil, err
	}
	enc := &Encoder{Codec: codec, Level: cfg.CompressionLevel}
	dec := &Decoder{}
	if cfg.Encryption.IdentityFile != "" {
		d, err := crypto.LoadIdentityFile(cfg.Encryption.IdentityFile)
		if err != nil {
			return nil, fmt.Errorf("config encryption.identity_file: %w", err)
		}
		dec.Decryptor = d
	}
	recipients := append([]string(nil), cfg.Encryption.Recipients...)
	if cfg.Encryption.RecipientsFile != "" {
		more, err := crypto.ReadRecipientsFile(cfg.Encryption.RecipientsFile)
		if err != nil {
			return nil, fmt.Errorf("config encryption.recipients_file: %w", err)
		}
		recipients = append(recipients, more...)
	}
	if len(recipients) == 0 && dec.Decryptor != nil {
		recipients = dec.Decryptor.Recipients()
	}
	if len(recipients) > 0 {
		e, err := crypto.NewEncryptor(recipients)
		if err != nil {
			return nil, fmt.Errorf("config encryption.recipients: %w", err)
		}
		enc.Encryptor = e
	}
	st, err := open.Open(ctx, cfg.Repo, s3.Config{
		Endpoint:        cfg.S3.Endpoint,
		Region:          cfg.S3.Region,
		ForcePathStyle:  cfg.S3.ForcePathStyle,
		AccessKeyID:     cfg.S3.AccessKeyID,
		SecretAccessKey: cfg.S3.SecretAccessKey,
		PartSize:        cfg.S3.PartSize,
		Concurrency:     cfg.S3.Concurrency,
		// retry.max_attempts 1 asks for no retries; otherwise a part
		// gets at least s3's default (its body may be a stream that no
		// layer above can replay).
		PartAttempts: partAttempts(cfg.Retry.MaxAttempts),
	})
	if err != nil {
		return nil, fmt.Errorf("open repository: %w", err)
	}
	st = retry.New(st, retry.Options{MaxAttempts: cfg.Retry.MaxAttempts, CallTimeout: cfg.Retry.CallTimeout})
	return &Repo{Store: st, Encoder: enc, Decoder: dec, Description: open.Describe(cfg.Repo)}, nil
}

// partAttempts is s3.Config.PartAttempts for retry.max_attempts n.
func partAttempts(n int) int {
	if n <= 1 {
		return 1
	}
	return max(n, s3.DefaultPartAttempts)
}
