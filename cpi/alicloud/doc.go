// Package alicloud is the Alibaba Cloud CPI, built on alibaba-cloud-sdk-go (V1,
// services/ecs, vpc, slb and nlb): ECS instances from images, VSwitches and security
// groups, private addresses for manual networks, EIPs for vip networks, load
// balancer backends (CLB default server groups and VServer groups, NLB server
// groups, joined once the instance runs; NLB groups are left before release,
// CLB drops released instances itself), cloud disks and snapshots (resized in
// place; update_disk changes category and performance level with ModifyDiskSpec),
// images imported from OSS or light stemcells naming an image per region.
//
// Heavy stemcells: ECS imports only from OSS, so, as BOSH's CPI does, root.img is
// streamed out of the stemcell's image into a private bucket made for the one upload
// (bosh-stemcell-<random>, at oss_endpoint, default oss-<region>.aliyuncs.com), then
// imported (ImportImage, waited for), and the object and bucket are deleted whether
// the import succeeded or not (a failed deletion is logged). The OSS Go SDK is not
// used: the four calls (PutBucket, PutObject, DeleteObject, DeleteBucket) are plain
// HTTP with OSS's V1 header signature (HMAC-SHA1), the STS token as
// x-oss-security-token. One PutObject takes at most 5 GiB; larger images are refused
// (no multipart upload) and must be uploaded by hand and named by oss_bucket/oss_object.
//
// It follows BOSH's Alibaba Cloud CPI where behaviour is visible from outside: the
// global configuration and cloud_properties keys have its names; an instance is
// created stopped, gets the agent's full settings as base64 UserData (at most 32 KiB
// before encoding), and is then started; disks are found by the device ECS reports
// (xvdX seen as vdX) or, on NVMe instance types, by their /dev/disk/by-id name.
// Metadata becomes ECS tags; a tag carries the agent id, so list_vms finds Bosun's
// instances.
//
// The V1 SDK takes no context: each request gets its own SDK client whose transport
// carries the caller's context, so cancelling a deploy cancels its requests (and no
// client is shared between goroutines: the SDK mutates it per request).
//
// Errors: every answer other than success becomes a *cpi.Error whose message names
// the API call, the status, the error code and the request id. Throttling*,
// ServiceUnavailable, SystemBusy and conflicts (NLB's Conflict.Lock too) are retried with bounded exponential backoff and
// jitter; other 5xx and lost answers only for idempotent requests (Describe*, and
// creates carrying a ClientToken, which ECS answers with the same resource); quota
// and parameter errors never. create_vm says ok_to_retry only when the cloud made
// nothing or cleaned up after itself. The access key secret and security token
// appear in no log line, error or printed config, and neither does the request URL
// (signed, and carrying the user data). The SDK's own debug output (DEBUG=sdk in
// the environment) prints whole requests, user data included: never enable it
// where the director's agents are real.
package alicloud
