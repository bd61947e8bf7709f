// Package cpi is the Cloud Provider Interface contract: the BOSH CPI API v2 method set
// as Go interfaces, typed ids, the agent settings a VM boots with, and the one error
// type every implementation returns. It imports only the standard library.
//
// Like database/sql/driver, the core interface (CPI) is what every cloud must do;
// everything a cloud may lack (reboot, metadata, snapshots, resize, listing) is an
// optional interface discovered by type assertion. The package-level helpers (RebootVM,
// SetVMMetadata, …) do that assertion and answer NotImplemented when a CPI lacks the
// capability, which is how BOSH's director treats those methods.
//
// Conventions every implementation keeps:
//   - sizes are MiB, as on BOSH's wire;
//   - cloud properties arrive as raw JSON objects and are decoded strictly into the
//     CPI's own struct with DecodeCloudProperties (an unknown key is an error naming it);
//   - deleting something that is already gone succeeds (idempotent deletes); asking
//     about or acting on something missing returns VMNotFound or DiskNotFound;
//   - every error is an *Error saying which CPI, which method, which instance and
//     whether a retry is safe; OkToRetry is never true when the cloud may have acted.
package cpi
