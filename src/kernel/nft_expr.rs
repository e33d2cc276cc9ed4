//! The nf_tables expressions iptables-nft builds its rules from, as netlink attributes:
//! written in the order libnftnl writes them, read back from the kernel's dumps. An
//! expression not listed here makes the whole rule unreadable (`decode` gives None), and a
//! rule qrouter cannot read is never taken for one of its own.

use super::nft::{attrs, be32, be64, text, Attrs};

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
/// The register iptables-nft loads into (NFT_REG_1), and the verdict register.
const REG_1: u32 = 1;
const REG_VERDICT: u32 = 0;
/// Where a payload is loaded from: the network header (addresses) or the transport
/// header (ports).
pub const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
pub const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFT_BITWISE_BOOL: u32 = 0;

/// One expression of a rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `meta load KEY => reg 1` (NFT_META_IIFNAME 6, NFT_META_OIFNAME 7).
    Meta {
        key: u32,
    },
    /// `payload load LEN @ network header + OFFSET => reg 1` (or transport header: `base`).
    Payload {
        base: u32,
        offset: u32,
        len: u32,
    },
    /// `bitwise reg 1 = (reg 1 & MASK) ^ 0`.
    Bitwise {
        mask: Vec<u8>,
    },
    /// `cmp eq|neq reg 1 DATA`.
    Cmp {
        equal: bool,
        data: Vec<u8>,
    },
    /// An xtables match run by the compat layer, with its revision's info struct.
    Match {
        name: String,
        revision: u32,
        info: Vec<u8>,
    },
    /// An xtables target run by the compat layer.
    Target {
        name: String,
        revision: u32,
        info: Vec<u8>,
    },
    Counter {
        packets: u64,
        bytes: u64,
    },
    /// `immediate reg 0 VERDICT`: NF_ACCEPT 1, NF_DROP 0, NFT_JUMP -3 (with its chain),
    /// NFT_RETURN -5.
    Verdict {
        code: i32,
        chain: Option<String>,
    },
}

/// The content of NFTA_RULE_EXPRESSIONS for `exprs`.
pub fn encode(exprs: &[Expr]) -> Attrs {
    let mut list = Attrs::default();
    for e in exprs {
        list.nest(NFTA_LIST_ELEM, |elem| {
            elem.str(NFTA_EXPR_NAME, e.name())
                .nest(NFTA_EXPR_DATA, |d| e.write(d));
        });
    }
    list
}

fn value(a: &mut Attrs, kind: u16, data: &[u8]) {
    a.nest(kind, |v| {
        v.bytes(NFTA_DATA_VALUE, data);
    });
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Cmp { .. } => "cmp",
            Expr::Match { .. } => "match",
            Expr::Target { .. } => "target",
            Expr::Counter { .. } => "counter",
            Expr::Verdict { .. } => "immediate",
        }
    }

    fn write(&self, a: &mut Attrs) {
        match self {
            Expr::Meta { key } => {
                a.u32(2, *key).u32(1, REG_1);
            }
            Expr::Payload { base, offset, len } => {
                a.u32(1, REG_1).u32(2, *base).u32(3, *offset).u32(4, *len);
            }
            Expr::Bitwise { mask } => {
                a.u32(1, REG_1).u32(2, REG_1).u32(3, mask.len() as u32);
                value(a, 4, mask);
                value(a, 5, &vec![0; mask.len()]);
            }
            Expr::Cmp { equal, data } => {
                a.u32(1, REG_1)
                    .u32(2, if *equal { NFT_CMP_EQ } else { NFT_CMP_NEQ });
                value(a, 3, data);
            }
            Expr::Match {
                name,
                revision,
                info,
            }
            | Expr::Target {
                name,
                revision,
                info,
            } => {
                a.str(1, name).u32(2, *revision).bytes(3, info);
            }
            Expr::Counter { packets, bytes } => {
                a.u64(1, *bytes).u64(2, *packets);
            }
            Expr::Verdict { code, chain } => {
                a.u32(1, REG_VERDICT).nest(2, |d| {
                    d.nest(NFTA_DATA_VERDICT, |v| {
                        v.u32(NFTA_VERDICT_CODE, *code as u32);
                        if let Some(chain) = chain {
                            v.str(NFTA_VERDICT_CHAIN, chain);
                        }
                    });
                });
            }
        }
    }
}

/// The expressions of a dumped rule, or None where one is not among those above.
pub fn decode(list: &[u8]) -> Option<Vec<Expr>> {
    attrs(list)?
        .into_iter()
        .map(|(kind, elem)| {
            (kind == NFTA_LIST_ELEM).then_some(())?;
            let fields = attrs(elem)?;
            let name = text(fields.iter().find(|(k, _)| *k == NFTA_EXPR_NAME)?.1)?;
            let data = fields
                .iter()
                .find(|(k, _)| *k == NFTA_EXPR_DATA)
                .map_or(&[][..], |d| d.1);
            read(name, &attrs(data)?)
        })
        .collect()
}

/// The value of attribute `kind`.
fn get<'a>(a: &[(u16, &'a [u8])], kind: u16) -> Option<&'a [u8]> {
    a.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v)
}

/// The bytes inside a NFTA_DATA_VALUE nest.
fn data_value(nest: &[u8]) -> Option<Vec<u8>> {
    Some(get(&attrs(nest)?, NFTA_DATA_VALUE)?.to_vec())
}

fn read(name: &str, a: &[(u16, &[u8])]) -> Option<Expr> {
    let u32_of = |kind| get(a, kind).and_then(be32);
    let reg_1 = |kind| (u32_of(kind)? == REG_1).then_some(());
    Some(match name {
        "meta" => {
            reg_1(1)?;
            Expr::Meta { key: u32_of(2)? }
        }
        "payload" => {
            reg_1(1)?;
            let base = u32_of(2)?;
            [NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER]
                .contains(&base)
                .then_some(())?;
            Expr::Payload {
                base,
                offset: u32_of(3)?,
                len: u32_of(4)?,
            }
        }
        "bitwise" => {
            reg_1(1)?;
            reg_1(2)?;
            (u32_of(6).unwrap_or(NFT_BITWISE_BOOL) == NFT_BITWISE_BOOL).then_some(())?;
            let xor = data_value(get(a, 5)?)?;
            xor.iter().all(|b| *b == 0).then_some(())?;
            Expr::Bitwise {
                mask: data_value(get(a, 4)?)?,
            }
        }
        "cmp" => {
            reg_1(1)?;
            let equal = match u32_of(2)? {
                NFT_CMP_EQ => true,
                NFT_CMP_NEQ => false,
                _ => return None,
            };
            Expr::Cmp {
                equal,
                data: data_value(get(a, 3)?)?,
            }
        }
        "match" | "target" => {
            let (name_, revision) = (text(get(a, 1)?)?.to_string(), u32_of(2)?);
            let info = get(a, 3)?.to_vec();
            match name {
                "match" => Expr::Match {
                    name: name_,
                    revision,
                    info,
                },
                _ => Expr::Target {
                    name: name_,
                    revision,
                    info,
                },
            }
        }
        "counter" => Expr::Counter {
            bytes: get(a, 1).and_then(be64)?,
            packets: get(a, 2).and_then(be64)?,
        },
        "immediate" => {
            (u32_of(1)? == REG_VERDICT).then_some(())?;
            let data = attrs(get(a, 2)?)?;
            let verdict = attrs(get(&data, NFTA_DATA_VERDICT)?)?;
            Expr::Verdict {
                code: get(&verdict, NFTA_VERDICT_CODE).and_then(be32)? as i32,
                chain: match get(&verdict, NFTA_VERDICT_CHAIN) {
                    Some(chain) => Some(text(chain)?.to_string()),
                    None => None,
                },
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-o qg-b8b32a88-03 -j SNAT --to-source 10.10.10.2 --random-fully`, as iptables-nft
    /// 1.8.9 sent it here (strace of `iptables-restore`).
    const SNAT_RULE: &str = concat!(
        "24000180090001006d6574610000000014000280080002000000000708000100000000013800018008000100636d70002c0002800800010000000001",
        "0800020000000000180003801300010071672d62386233326138382d303300002c0001800c000100636f756e746572001c0002800c00010000000000",
        "000000000c0002000000000000000000440001800b00010074617267657400003400028009000100534e41540000000008000200000000001c000300",
        "01000000110000000a0a0a020a0a0a020000000000000000"
    );

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn snat_rule() -> Vec<Expr> {
        vec![
            Expr::Meta { key: 7 },
            Expr::Cmp {
                equal: true,
                data: b"qg-b8b32a88-03\0".to_vec(),
            },
            Expr::Counter {
                packets: 0,
                bytes: 0,
            },
            Expr::Target {
                name: "SNAT".into(),
                revision: 0,
                info: unhex("01000000110000000a0a0a020a0a0a020000000000000000"),
            },
        ]
    }

    #[test]
    fn a_rule_is_written_byte_for_byte_as_iptables_nft_writes_it() {
        let exprs = snat_rule();
        assert_eq!(encode(&exprs).as_bytes(), unhex(SNAT_RULE));
        assert_eq!(decode(&unhex(SNAT_RULE)), Some(exprs));
    }

    #[test]
    fn jumps_and_masks_read_back() {
        let exprs = vec![
            Expr::Payload {
                base: NFT_PAYLOAD_NETWORK_HEADER,
                offset: 12,
                len: 4,
            },
            Expr::Bitwise {
                mask: vec![255, 255, 255, 128],
            },
            Expr::Cmp {
                equal: false,
                data: vec![172, 16, 101, 0],
            },
            Expr::Match {
                name: "conntrack".into(),
                revision: 3,
                info: vec![0; 168],
            },
            Expr::Verdict {
                code: -3,
                chain: Some("qrouter-snat".into()),
            },
        ];
        assert_eq!(decode(encode(&exprs).as_bytes()), Some(exprs));
    }

    #[test]
    fn an_unknown_expression_makes_the_rule_unreadable() {
        let mut list = Attrs::default();
        list.nest(NFTA_LIST_ELEM, |e| {
            e.str(NFTA_EXPR_NAME, "nat").nest(NFTA_EXPR_DATA, |_| {});
        });
        assert_eq!(decode(list.as_bytes()), None);
    }
}
