package manifest

import (
	"crypto/sha512"
	"strings"
)

// sha512Crypt is the SHA-512 crypt(3) hash ($6$) of a password with the default 5000
// rounds: the password_hash CredHub stores for user variables, usable in /etc/shadow.
func sha512Crypt(password, salt string) string {
	if len(salt) > 16 {
		salt = salt[:16]
	}
	pw, s := []byte(password), []byte(salt)

	b := sha512.New()
	b.Write(pw)
	b.Write(s)
	b.Write(pw)
	bSum := b.Sum(nil)

	a := sha512.New()
	a.Write(pw)
	a.Write(s)
	n := len(pw)
	for ; n > 64; n -= 64 {
		a.Write(bSum)
	}
	a.Write(bSum[:n])
	for n = len(pw); n > 0; n >>= 1 {
		if n&1 != 0 {
			a.Write(bSum)
		} else {
			a.Write(pw)
		}
	}
	aSum := a.Sum(nil)

	dp := sha512.New()
	for range len(pw) {
		dp.Write(pw)
	}
	p := repeatTo(dp.Sum(nil), len(pw))

	ds := sha512.New()
	for range 16 + int(aSum[0]) {
		ds.Write(s)
	}
	sb := repeatTo(ds.Sum(nil), len(s))

	for i := range 5000 {
		c := sha512.New()
		if i&1 != 0 {
			c.Write(p)
		} else {
			c.Write(aSum)
		}
		if i%3 != 0 {
			c.Write(sb)
		}
		if i%7 != 0 {
			c.Write(p)
		}
		if i&1 != 0 {
			c.Write(aSum)
		} else {
			c.Write(p)
		}
		aSum = c.Sum(nil)
	}

	const alphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var out strings.Builder
	out.WriteString("$6$" + salt + "$")
	enc := func(b2, b1, b0 byte, n int) {
		w := uint(b2)<<16 | uint(b1)<<8 | uint(b0)
		for range n {
			out.WriteByte(alphabet[w&0x3f])
			w >>= 6
		}
	}
	for _, t := range [][3]int{{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4}, {47, 5, 26}, {6, 27, 48},
		{28, 49, 7}, {50, 8, 29}, {9, 30, 51}, {31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13}, {56, 14, 35},
		{15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19}, {62, 20, 41}} {
		enc(aSum[t[0]], aSum[t[1]], aSum[t[2]], 4)
	}
	enc(0, 0, aSum[63], 2)
	return out.String()
}

func repeatTo(block []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out)+len(block) <= n {
		out = append(out, block...)
	}
	return append(out, block[:n-len(out)]...)
}
