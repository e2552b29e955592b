// Package s3 is the storage.Store for Amazon S3 and S3-compatible servers
// (MinIO, Ceph RGW, versitygw, ...), built on aws-sdk-go-v2.
//
// Words used here:
//   - bucket and prefix: the repository root is s3://bucket/prefix; a key k
//     is stored as the object "prefix/k" (or "k" with no prefix).
//   - part: a piece of a multipart upload, PartSize bytes (8 MiB unless
//     configured, at least 5 MiB).
//
// # Settings
//
// Config fields win over the SDK's own sources. Credentials are the
// explicit key pair when set, otherwise the SDK's default chain
// (AWS_ACCESS_KEY_ID, shared config and credentials files, SSO, web
// identity, container and instance roles). The region comes from
// Config.Region, then AWS_REGION or the shared config, and is "us-east-1"
// when nothing sets it. The endpoint comes from Config.Endpoint, then
// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL; ForcePathStyle selects
// path-style addressing, which most S3-compatible servers need.
//
// The SDK's newer default of computing a CRC checksum for every request
// and validating one on every response is turned down to "when required":
// several S3-compatible servers reject the x-amz-checksum-* headers or the
// aws-chunked trailers it relies on (versitygw accepts both settings).
// walrus checks content with its own checksums above storage. Setting
// AWS_REQUEST_CHECKSUM_CALCULATION or AWS_RESPONSE_CHECKSUM_VALIDATION
// restores the SDK's behaviour.
//
// # Writing
//
// Put reads the body into part buffers: a body shorter than one part goes
// up as a single PutObject, a longer one as a multipart upload with at
// most Concurrency parts (2 unless configured) in flight while the next is
// read. The buffers, PartSize bytes each, come from a pool of the Store
// shared by all its Puts and reused: at most 2 × Concurrency + 2 of them
// exist (48 MiB by default), so the memory of uploads stays bounded
// whatever the objects' sizes and however many Puts run at once; a Put
// waits for a free buffer. A body already in memory (storage.MemoryBody)
// that fits one part is sent as it is, without a buffer or a copy. An
// object becomes visible only when the single PUT or the
// CompleteMultipartUpload succeeds, so readers never see part of it.
// Retries are the SDK's standard retryer; every attempt sends a whole part
// from its buffer, never a half-consumed stream. The requests of an upload
// whose body no layer above can replay (UploadPart, CreateMultipartUpload,
// the PutObject of a buffered body) get Config.PartAttempts attempts (10
// by default), no retry quota, and are also retried when their answer is
// cut short, which the SDK alone gives up on. When the body fails, the
// context ends, a part fails or the size differs from PutOptions.Size, the
// upload is aborted (also when the context is already cancelled) and
// nothing is stored.
//
// An answer can be lost after the server stored the object (a broken
// connection, a 200 cut short). For CompleteMultipartUpload, and for a
// create-only PutObject whose retry meets 412, HeadObject then decides:
// when the key holds an object with this upload's ETag (the MD5 of the
// body, or for a multipart upload the one computed from the parts' MD5
// ETags), size and metadata, the Put has succeeded; otherwise
// CompleteMultipartUpload is sent again, up to three times, or the error
// stands. A server whose ETags are not MD5-based never matches: a lost
// answer then costs a failed Put, never a wrong success. Objects are
// limited
// to 10,000 parts, i.e. about 78 GiB with the default part size.
//
// IfNotExists is enforced twice: Put first asks HeadObject and fails with
// storage.ErrExists when the key is present, then sends the upload with
// "If-None-Match: *", which AWS S3 and recent servers apply atomically
// (412 Precondition Failed or 409 ConditionalRequestConflict become
// storage.ErrExists). A server that ignores the header still gets the
// HeadObject check, which closes all but a narrow race between two
// concurrent writers of one key.
//
// Metadata travels as x-amz-meta-* headers.
//
// # Reading, listing, deleting
//
// A 404 NoSuchKey is storage.ErrNotFound; a missing bucket never is (a
// HeadObject 404 carries no error code, so Stat confirms the bucket with
// HeadBucket, once per Store, before it reports a key as absent). List
// pages through ListObjectsV2, returns keys relative to the prefix in the
// server's (lexical) order and skips objects whose names are not valid
// keys, such as "folder/" markers. Delete sends DeleteObjects in batches of
// 1000 and checks the result of every key; servers without DeleteObjects
// get one DeleteObject per key. GetRange sends a Range header.
package s3
