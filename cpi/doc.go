// Package cpi is the Cloud Provider Interface contract: the BOSH CPI API v2 method set
// as Go interfaces, typed ids and the error kinds every implementation returns.
// It imports only the standard library.
package cpi
