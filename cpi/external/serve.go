package external

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/bosun-gitops/bosun/cpi"
)

// Serve answers one CPI request read from in on out, calling c: the executable side
// of the protocol, as BOSH's tools and this package's CPI expect it. Problems with
// the request are answered as CpiError responses; the error returned is only about
// writing the response.
func Serve(ctx context.Context, c cpi.CPI, in io.Reader, out io.Writer, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var resp response
	result, err := dispatch(ctx, c, in, log)
	if err != nil {
		resp.Error = toWire(err)
	} else {
		b, merr := json.Marshal(result)
		if merr != nil {
			resp.Error = &wireError{Type: cpi.WirePrefix + string(cpi.CpiError), Message: "encode result: " + merr.Error()}
		}
		resp.Result = b
	}
	if resp.Result == nil {
		resp.Result = json.RawMessage("null")
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return fmt.Errorf("encode cpi response: %w", err)
	}
	if _, err := out.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write cpi response: %w", err)
	}
	return nil
}

func toWire(err error) *wireError {
	var e *cpi.Error
	if errors.As(err, &e) {
		return &wireError{Type: cpi.WirePrefix + string(e.Kind), Message: e.Message(), OkToRetry: e.OkToRetry && e.Kind.Retriable()}
	}
	return &wireError{Type: cpi.WirePrefix + string(cpi.CloudError), Message: err.Error()}
}

func badRequest(method, format string, a ...any) error {
	return &cpi.Error{Method: method, Kind: cpi.CpiError, Msg: fmt.Sprintf(format, a...)}
}

// args decodes a request's positional arguments into ptrs; missing trailing
// arguments keep their zero values, as BOSH's optional ones do.
func args(method string, raw []json.RawMessage, min int, ptrs ...any) error {
	if len(raw) < min || len(raw) > len(ptrs) {
		return badRequest(method, "%s takes %d arguments, got %d", method, len(ptrs), len(raw))
	}
	for i, r := range raw {
		if t := bytes.TrimSpace(r); len(t) == 0 || string(t) == "null" {
			continue
		}
		if err := json.Unmarshal(r, ptrs[i]); err != nil {
			return badRequest(method, "argument %d: %v", i+1, err)
		}
	}
	return nil
}

const maxRequest = 64 << 20

func dispatch(ctx context.Context, c cpi.CPI, in io.Reader, log *slog.Logger) (any, error) {
	b, err := io.ReadAll(io.LimitReader(in, maxRequest+1))
	if err != nil {
		return nil, badRequest("", "read request: %v", err)
	}
	if len(b) > maxRequest {
		return nil, badRequest("", "request larger than %d bytes", maxRequest)
	}
	var req struct {
		Method     string            `json:"method"`
		Arguments  []json.RawMessage `json:"arguments"`
		Context    json.RawMessage   `json:"context"`
		APIVersion int               `json:"api_version"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, badRequest("", "request is not a CPI request: %v", err)
	}
	var rc struct {
		RequestID string `json:"request_id"`
		VM        struct {
			Stemcell struct {
				APIVersion int `json:"api_version"`
			} `json:"stemcell"`
		} `json:"vm"`
	}
	if len(req.Context) > 0 {
		if err := json.Unmarshal(req.Context, &rc); err != nil {
			return nil, badRequest(req.Method, "context: %v", err)
		}
	}
	log.Debug("cpi request", "method", req.Method, "request_id", rc.RequestID)
	m, a := req.Method, req.Arguments
	switch m {
	case "info":
		return c.Info(ctx)
	case "create_stemcell":
		var path string
		var props json.RawMessage
		if err := args(m, a, 2, &path, &props); err != nil {
			return nil, err
		}
		return c.CreateStemcell(ctx, path, props)
	case "delete_stemcell":
		var cid cpi.StemcellCID
		if err := args(m, a, 1, &cid); err != nil {
			return nil, err
		}
		return nil, c.DeleteStemcell(ctx, cid)
	case "create_vm":
		spec := cpi.VMSpec{StemcellAPIVersion: rc.VM.Stemcell.APIVersion}
		if err := args(m, a, 5, &spec.AgentID, &spec.Stemcell, &spec.CloudProperties, &spec.Networks, &spec.DiskCIDs, &spec.Env); err != nil {
			return nil, err
		}
		spec.Settings = agentFromEnv(spec.Env)
		cid, nets, err := c.CreateVM(ctx, spec)
		if err != nil {
			return nil, err
		}
		if req.APIVersion < 2 {
			return cid, nil
		}
		return []any{cid, nets}, nil
	case "delete_vm", "has_vm", "reboot_vm", "get_disks":
		var cid cpi.VMCID
		if err := args(m, a, 1, &cid); err != nil {
			return nil, err
		}
		switch m {
		case "delete_vm":
			return nil, c.DeleteVM(ctx, cid)
		case "has_vm":
			return c.HasVM(ctx, cid)
		case "reboot_vm":
			return nil, cpi.RebootVM(ctx, c, cid)
		default:
			disks, err := cpi.GetDisks(ctx, c, cid)
			if disks == nil {
				disks = []cpi.DiskCID{}
			}
			return disks, err
		}
	case "set_vm_metadata":
		var cid cpi.VMCID
		var md cpi.Metadata
		if err := args(m, a, 2, &cid, &md); err != nil {
			return nil, err
		}
		return nil, cpi.SetVMMetadata(ctx, c, cid, md)
	case "calculate_vm_cloud_properties":
		var r cpi.VMResources
		if err := args(m, a, 1, &r); err != nil {
			return nil, err
		}
		if calc, ok := c.(cpi.VMPropertiesCalculator); ok {
			return calc.CalculateVMCloudProperties(ctx, r)
		}
	case "list_vms":
		if err := args(m, a, 0); err != nil {
			return nil, err
		}
		vms, err := cpi.ListVMs(ctx, c)
		if vms == nil {
			vms = []cpi.VMInfo{}
		}
		return vms, err
	case "create_disk":
		var size int
		var props json.RawMessage
		var vm cpi.VMCID
		if err := args(m, a, 2, &size, &props, &vm); err != nil {
			return nil, err
		}
		return c.CreateDisk(ctx, size, props, vm)
	case "delete_disk", "has_disk":
		var cid cpi.DiskCID
		if err := args(m, a, 1, &cid); err != nil {
			return nil, err
		}
		if m == "has_disk" {
			return c.HasDisk(ctx, cid)
		}
		return nil, c.DeleteDisk(ctx, cid)
	case "attach_disk", "detach_disk":
		var vm cpi.VMCID
		var disk cpi.DiskCID
		if err := args(m, a, 2, &vm, &disk); err != nil {
			return nil, err
		}
		if m == "detach_disk" {
			return nil, c.DetachDisk(ctx, vm, disk)
		}
		hint, err := c.AttachDisk(ctx, vm, disk)
		if err != nil || req.APIVersion < 2 {
			return nil, err
		}
		return hint, nil
	case "set_disk_metadata", "snapshot_disk":
		var cid cpi.DiskCID
		var md cpi.Metadata
		if err := args(m, a, 2, &cid, &md); err != nil {
			return nil, err
		}
		if m == "snapshot_disk" {
			return cpi.SnapshotDisk(ctx, c, cid, md)
		}
		return nil, cpi.SetDiskMetadata(ctx, c, cid, md)
	case "delete_snapshot":
		var cid cpi.SnapshotCID
		if err := args(m, a, 1, &cid); err != nil {
			return nil, err
		}
		return nil, cpi.DeleteSnapshot(ctx, c, cid)
	case "resize_disk":
		var cid cpi.DiskCID
		var size int
		if err := args(m, a, 2, &cid, &size); err != nil {
			return nil, err
		}
		return nil, cpi.ResizeDisk(ctx, c, cid, size)
	case "update_disk":
		var cid cpi.DiskCID
		var size int
		var props json.RawMessage
		if err := args(m, a, 3, &cid, &size, &props); err != nil {
			return nil, err
		}
		if u, ok := c.(cpi.DiskUpdater); ok {
			return u.UpdateDisk(ctx, cid, size, props)
		}
		return nil, &cpi.Error{Method: m, Kind: cpi.NotSupported, Msg: "this CPI cannot update disks"}
	case "":
		return nil, badRequest("", "request names no method")
	}
	return nil, &cpi.Error{Method: m, Kind: cpi.NotImplemented, Msg: fmt.Sprintf("method %q is not implemented", m)}
}

// agentFromEnv recovers what the director put into env.bosh for the agent: its
// NATS URL (mbus.urls) and blobstore (blobstores), as a v2 CPI passes them on.
func agentFromEnv(env json.RawMessage) cpi.AgentSettings {
	var e struct {
		Bosh struct {
			Mbus struct {
				URLs []string `json:"urls"`
			} `json:"mbus"`
			Blobstores []cpi.Blobstore `json:"blobstores"`
		} `json:"bosh"`
	}
	var s cpi.AgentSettings
	if json.Unmarshal(env, &e) != nil {
		return s
	}
	if len(e.Bosh.Mbus.URLs) > 0 {
		s.Mbus = e.Bosh.Mbus.URLs[0]
	}
	if len(e.Bosh.Blobstores) > 0 {
		s.Blobstore = e.Bosh.Blobstores[0]
	}
	return s
}
