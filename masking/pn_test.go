package masking

import (
	"math/rand/v2"
	"testing"

	"github.com/nyaruka/phonenumbers"
	"google.golang.org/protobuf/proto"
)

func TestPN7(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	bad := 0
	for i := 0; i < 20000; i++ {
		pre := uint64(200000 + r.IntN(800000))
		var first bool
		for j := 0; j < 8; j++ {
			n := pre*10000 + uint64(r.IntN(10000))
			pn := phonenumbers.PhoneNumber{CountryCode: proto.Int32(1), NationalNumber: proto.Uint64(n)}
			v := phonenumbers.IsValidNumber(&pn)
			if j == 0 {
				first = v
			} else if v != first {
				bad++
				t.Logf("prefix %d differs", pre)
				break
			}
		}
	}
	t.Log("bad", bad)
}
