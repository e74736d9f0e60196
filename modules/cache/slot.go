package cache

import "strings"

// slotOf returns the Redis Cluster hash slot of key: CRC16 (XMODEM) of the
// key, or of its hash tag (the text between the first '{' and the next
// '}', when not empty), modulo 16384.
func slotOf(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc & 16383
}

// sameSlot checks, in cluster mode only, that every full key of one command
// hashes to one slot. rueidis' cluster command builder panics on mixed
// slots, so this check must come before the command is built. user holds
// the caller's keys (without prefix), for the error.
func (s *session) sameSlot(c command, full, user []string) error {
	if !s.cluster || len(full) < 2 {
		return nil
	}
	first := slotOf(full[0])
	for i := 1; i < len(full); i++ {
		if sl := slotOf(full[i]); sl != first {
			return crossSlotError(c, user[0], user[i], first, sl)
		}
	}
	return nil
}
