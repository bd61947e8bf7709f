// Package alicloud is the Alibaba Cloud CPI, built on alibaba-cloud-sdk-go.
package alicloud
