package main

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

func TestDeadOwner(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	gone := cmd.Process.Pid // reaped: no such process (unless the pid was reused since)
	self := os.Getpid()
	tests := []struct {
		owner string
		want  bool
	}{
		{fmt.Sprintf("h1:%d/0", gone), true},
		{fmt.Sprintf("h1:%d", gone), true},
		{fmt.Sprintf("h2:%d/0", gone), false}, // another host: its pids are not ours to judge
		{fmt.Sprintf("h1:%d/1", self), false}, // this very process
		{fmt.Sprintf("h1:%d/0", os.Getppid()), false},
		{"h1:1/0", false},
		{"h1:x/0", false},
		{"h1/0", false},
		{"", false},
		{fmt.Sprintf(":%d/0", gone), false},
	}
	for _, tt := range tests {
		if got := deadOwner(tt.owner, "h1", self); got != tt.want {
			t.Errorf("deadOwner(%q) = %v, want %v", tt.owner, got, tt.want)
		}
	}
}
