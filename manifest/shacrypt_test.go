package manifest

import "testing"

func TestSHA512Crypt(t *testing.T) {
	// Vectors from Drepper's SHA-crypt specification.
	tests := []struct{ pw, salt, want string }{
		{"correct horse", "abcdefgh", "$6$abcdefgh$yIZAF3gQPvtKZO/9qOJKffAKKbtS3ef3qmwyugk4uWVjX8YZf/GV3A8SkFxEPY0T56CcilGrHKLffBsp6dLMG."}, // openssl passwd -6
		{"Hello world!", "saltstring", "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
	}
	for _, tt := range tests {
		if got := sha512Crypt(tt.pw, tt.salt); got != tt.want {
			t.Errorf("sha512Crypt(%q, %q) = %s, want %s", tt.pw, tt.salt, got, tt.want)
		}
	}
}
