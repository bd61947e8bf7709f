// Package postgres owns storing state in PostgreSQL through pgx: embedded migrations,
// the task queue and deployment locks.
package postgres
