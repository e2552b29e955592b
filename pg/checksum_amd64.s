//go:build amd64 && !purego

#include "textflag.h"

// checksumMask clears pd_checksum (bytes 8 and 9 of the page) from the first
// 32 bytes of row 0, so it is hashed as zero.
DATA checksumMask<>+0x00(SB)/8, $0xFFFFFFFFFFFFFFFF
DATA checksumMask<>+0x08(SB)/8, $0xFFFFFFFFFFFF0000
DATA checksumMask<>+0x10(SB)/8, $0xFFFFFFFFFFFFFFFF
DATA checksumMask<>+0x18(SB)/8, $0xFFFFFFFFFFFFFFFF
GLOBL checksumMask<>(SB), RODATA|NOPTR, $32

// ROUND folds the eight words in W into the eight lane hashes in H:
// t := H ^ W; H = t*prime ^ t>>17. Y15 holds the prime in every lane; T is
// scratch. W may be a memory operand.
#define ROUND(W, H, T) \
	VPXOR   W, H, T;    \
	VPMULLD Y15, T, H;  \
	VPSRLD  $17, T, T;  \
	VPXOR   T, H, H

// ROUND0 is ROUND with a zero word: t := H.
#define ROUND0(H, T) \
	VPSRLD  $17, H, T;  \
	VPMULLD Y15, H, H;  \
	VPXOR   T, H, H

// func checksumAVX2(page []byte) uint32
TEXT ·checksumAVX2(SB), NOSPLIT, $0-28
	MOVQ page_base+0(FP), SI
	MOVQ page_len+8(FP), CX

	MOVL         $16777619, AX
	MOVQ         AX, X15
	VPBROADCASTD X15, Y15

	// Lanes 0-7, 8-15, 16-23, 24-31 of the hash.
	VMOVDQU ·checksumBaseOffsets+0(SB), Y0
	VMOVDQU ·checksumBaseOffsets+32(SB), Y1
	VMOVDQU ·checksumBaseOffsets+64(SB), Y2
	VMOVDQU ·checksumBaseOffsets+96(SB), Y3

	// Row 0, with pd_checksum masked out.
	VMOVDQU 0(SI), Y4
	VPAND   checksumMask<>(SB), Y4, Y4
	ROUND(Y4, Y0, Y4)
	ROUND(32(SI), Y1, Y5)
	ROUND(64(SI), Y2, Y6)
	ROUND(96(SI), Y3, Y7)
	ADDQ    $128, SI
	SUBQ    $128, CX
	JZ      finish

loop:
	ROUND(0(SI), Y0, Y4)
	ROUND(32(SI), Y1, Y5)
	ROUND(64(SI), Y2, Y6)
	ROUND(96(SI), Y3, Y7)
	ADDQ $128, SI
	SUBQ $128, CX
	JNZ  loop

finish:
	// Two more rounds with the word 0.
	ROUND0(Y0, Y4)
	ROUND0(Y1, Y5)
	ROUND0(Y2, Y6)
	ROUND0(Y3, Y7)
	ROUND0(Y0, Y4)
	ROUND0(Y1, Y5)
	ROUND0(Y2, Y6)
	ROUND0(Y3, Y7)

	// XOR all 32 lanes together.
	VPXOR        Y1, Y0, Y0
	VPXOR        Y3, Y2, Y2
	VPXOR        Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPXOR        X1, X0, X0
	VPSHUFD      $0x4E, X0, X1
	VPXOR        X1, X0, X0
	VPSHUFD      $0xB1, X0, X1
	VPXOR        X1, X0, X0
	MOVL         X0, AX
	VZEROUPPER
	MOVL         AX, ret+24(FP)
	RET
