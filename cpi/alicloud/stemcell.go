package alicloud

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"

	"github.com/bosun-gitops/bosun/cpi"
)

// lightSuffix marks a light stemcell's cid, so that deleting the stemcell leaves the
// shared image alone.
const lightSuffix = " light"

// imageID is the ECS image behind a stemcell cid.
func imageID(sc cpi.StemcellCID) string { return strings.TrimSuffix(string(sc), lightSuffix) }

// allImageStatuses makes DescribeImages report images in every state: by default it
// reports only Available ones.
const allImageStatuses = "Creating,Waiting,Available,UnAvailable,CreateFailed,Deprecated"

// CreateStemcell implements cpi.CPI. With image_id (region → image) in the cloud
// properties the stemcell is light: the region's image must exist and be Available,
// and it is never deleted with the stemcell. With oss_bucket and oss_object the
// image is imported from OSS and waited for. Otherwise the stemcell is heavy: its
// image goes to a temporary OSS bucket first (see importTarball).
func (c *CPI) CreateStemcell(ctx context.Context, imagePath string, props json.RawMessage) (cpi.StemcellCID, error) {
	const method = "create_stemcell"
	var p stemcellProps
	if err := cpi.DecodeCloudProperties(props, &p); err != nil {
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, err, "bad stemcell cloud_properties")
	}
	switch {
	case len(p.ImageID) > 0:
		id := p.ImageID[c.cfg.Region]
		if id == "" {
			return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, nil, "light stemcell has no image for region %s (it has: %s)",
				c.cfg.Region, strings.Join(slices.Sorted(maps.Keys(p.ImageID)), ", "))
		}
		img, err := c.describeImage(ctx, id)
		if err != nil {
			return "", c.errf(ctx, method, id, cpi.CloudError, false, err, "light stemcell image %s", id)
		}
		if img == nil {
			return "", c.errf(ctx, method, id, cpi.CloudError, false, nil, "light stemcell image %s not found in region %s", id, c.cfg.Region)
		}
		if img.Status != "Available" {
			return "", c.errf(ctx, method, id, cpi.CloudError, false, nil, "light stemcell image %s is %s, not Available", id, img.Status)
		}
		return cpi.StemcellCID(id + lightSuffix), nil
	case p.OSSBucket != "" && p.OSSObject != "":
		return c.importImage(ctx, p)
	case p.OSSBucket != "" || p.OSSObject != "":
		return "", c.errf(ctx, method, imagePath, cpi.CloudError, false, nil, "oss_bucket and oss_object go together")
	}
	return c.importTarball(ctx, imagePath, p)
}

func (c *CPI) importImage(ctx context.Context, p stemcellProps) (cpi.StemcellCID, error) {
	const method = "create_stemcell"
	subject := "oss://" + p.OSSBucket + "/" + p.OSSObject
	format := strings.ToUpper(cmp.Or(p.DiskFormat, "raw"))
	switch format {
	case "RAW", "QCOW2", "VHD":
	default:
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, nil, "disk_format %q: ECS imports raw, qcow2 or vhd", p.DiskFormat)
	}
	r := ecs.CreateImportImageRequest()
	r.ClientToken = newID()
	name := cmp.Or(p.Name, "bosh-stemcell")
	if p.Version != "" {
		name += "-" + string(p.Version)
	}
	r.ImageName = instanceName(name + "-" + r.ClientToken[:8])
	r.Description = cmp.Or(p.Description, "BOSH stemcell "+name)
	r.Architecture = cmp.Or(p.Architecture, "x86_64")
	r.OSType = strings.ToLower(cmp.Or(p.OSType, "linux"))
	r.Platform = platform(p.OSDistro)
	r.DiskDeviceMapping = &[]ecs.ImportImageDiskDeviceMapping{{OSSBucket: p.OSSBucket, OSSObject: p.OSSObject, Format: format,
		DiskImageSize: strconv.Itoa(max(gib(int(p.Disk)), 5))}}
	resp := ecs.CreateImportImageResponse()
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, resp); err != nil {
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "import image")
	}
	err := c.waitFor(ctx, "image "+resp.ImageId, func(ctx context.Context) (bool, string, error) {
		img, err := c.describeImage(ctx, resp.ImageId)
		if err != nil {
			return false, "", err
		}
		if img == nil {
			return false, "", fmt.Errorf("image %s vanished while importing", resp.ImageId)
		}
		switch img.Status {
		case "Available":
			return true, "", nil
		case "CreateFailed", "UnAvailable":
			return false, "", fmt.Errorf("ECS could not import the image: it is %s", img.Status)
		}
		return false, img.Status + " " + img.Progress, nil
	})
	if err != nil {
		if derr := c.deleteImage(context.WithoutCancel(ctx), resp.ImageId); derr != nil {
			c.log.Error("could not delete the image of a failed import", "image", resp.ImageId, "err", derr)
		}
		return "", c.errf(ctx, method, subject, cpi.CloudError, false, err, "image %s", resp.ImageId)
	}
	c.log.Info("created stemcell", "image", resp.ImageId, "name", r.ImageName)
	return cpi.StemcellCID(resp.ImageId), nil
}

// platform is ECS's name for the stemcell's distribution.
func platform(distro string) string {
	switch strings.ToLower(distro) {
	case "ubuntu":
		return "Ubuntu"
	case "centos":
		return "CentOS"
	case "opensuse":
		return "OpenSUSE"
	}
	return "Others Linux"
}

// describeImage returns the image in any state, or nil when ECS has none by that id.
func (c *CPI) describeImage(ctx context.Context, id string) (*ecs.Image, error) {
	r := ecs.CreateDescribeImagesRequest()
	r.ImageId = id
	r.Status = allImageStatuses
	r.ShowExpired = requests.NewBoolean(true)
	resp := ecs.CreateDescribeImagesResponse()
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, resp); err != nil {
		if codeIs(err, "InvalidImageId.NotFound", "InvalidImageId.Malformed") {
			return nil, nil
		}
		return nil, err
	}
	for i := range resp.Images.Image {
		if resp.Images.Image[i].ImageId == id {
			return &resp.Images.Image[i], nil
		}
	}
	return nil, nil
}

// deleteImage deletes the image and the snapshots it was made of.
func (c *CPI) deleteImage(ctx context.Context, id string) error {
	img, err := c.describeImage(ctx, id)
	if err != nil || img == nil {
		return err
	}
	r := ecs.CreateDeleteImageRequest()
	r.ImageId = id
	r.Force = requests.NewBoolean(true)
	if err := c.do(ctx, call{ep: c.ecs, idempotent: true}, r, ecs.CreateDeleteImageResponse()); err != nil && !codeIs(err, "InvalidImageId.NotFound") {
		return err
	}
	for _, m := range img.DiskDeviceMappings.DiskDeviceMapping {
		if m.SnapshotId != "" {
			if err := c.deleteSnapshot(ctx, m.SnapshotId); err != nil {
				return fmt.Errorf("snapshot %s of image %s: %w", m.SnapshotId, id, err)
			}
		}
	}
	return nil
}

// DeleteStemcell implements cpi.CPI. A light stemcell's image belongs to someone
// else and stays; an image already gone is not an error.
func (c *CPI) DeleteStemcell(ctx context.Context, sc cpi.StemcellCID) error {
	if strings.HasSuffix(string(sc), lightSuffix) {
		return nil
	}
	if err := c.deleteImage(ctx, string(sc)); err != nil {
		return c.errf(ctx, "delete_stemcell", string(sc), cpi.CloudError, false, err, "")
	}
	c.log.Info("deleted stemcell", "image", sc)
	return nil
}
