package alicloud

// SetMaxPutObject lowers the one-PutObject limit (OSS's 5 GiB), so tests reach it
// without making a 5 GiB image.
func SetMaxPutObject(c *CPI, n int64) { c.maxPut = n }
