//! Regions as ISO 3166-2 codes, so that every spelling channels send compares equal: a Tmall
//! trade's `江苏省`, an app's `江苏`, a web shop's `Jiangsu`, a form's `JS` and `CN-JS` are one
//! region. Addresses keep what the customer wrote; carrier tables, warehouse regions, numbering
//! codes and report keys compare the codes. A region the table does not know compares as
//! written, without regard to case.
//!
//! China's provincial divisions follow ISO 3166-2:CN as amended in 2017 (two-letter codes:
//! `CN-JS` Jiangsu, `CN-SH` Shanghai, ...), with the Chinese name (full and short) and the
//! pinyin (with the usual English forms: Inner Mongolia, Tibet) of each.

/// `(code, pinyin and English forms, Chinese full name, Chinese short name)`.
const CN: [(&str, &[&str], &str, &str); 34] = [
    ("CN-AH", &["Anhui"], "安徽省", "安徽"),
    ("CN-BJ", &["Beijing"], "北京市", "北京"),
    ("CN-CQ", &["Chongqing"], "重庆市", "重庆"),
    ("CN-FJ", &["Fujian"], "福建省", "福建"),
    ("CN-GD", &["Guangdong"], "广东省", "广东"),
    ("CN-GS", &["Gansu"], "甘肃省", "甘肃"),
    (
        "CN-GX",
        &["Guangxi", "Guangxi Zhuang"],
        "广西壮族自治区",
        "广西",
    ),
    ("CN-GZ", &["Guizhou"], "贵州省", "贵州"),
    ("CN-HA", &["Henan"], "河南省", "河南"),
    ("CN-HB", &["Hubei"], "湖北省", "湖北"),
    ("CN-HE", &["Hebei"], "河北省", "河北"),
    ("CN-HI", &["Hainan"], "海南省", "海南"),
    (
        "CN-HK",
        &["Hong Kong", "Xianggang"],
        "香港特别行政区",
        "香港",
    ),
    ("CN-HL", &["Heilongjiang"], "黑龙江省", "黑龙江"),
    ("CN-HN", &["Hunan"], "湖南省", "湖南"),
    ("CN-JL", &["Jilin"], "吉林省", "吉林"),
    ("CN-JS", &["Jiangsu"], "江苏省", "江苏"),
    ("CN-JX", &["Jiangxi"], "江西省", "江西"),
    ("CN-LN", &["Liaoning"], "辽宁省", "辽宁"),
    (
        "CN-MO",
        &["Macao", "Macau", "Aomen"],
        "澳门特别行政区",
        "澳门",
    ),
    (
        "CN-NM",
        &["Nei Mongol", "Inner Mongolia", "Neimenggu"],
        "内蒙古自治区",
        "内蒙古",
    ),
    (
        "CN-NX",
        &["Ningxia", "Ningxia Hui"],
        "宁夏回族自治区",
        "宁夏",
    ),
    ("CN-QH", &["Qinghai"], "青海省", "青海"),
    ("CN-SC", &["Sichuan"], "四川省", "四川"),
    ("CN-SD", &["Shandong"], "山东省", "山东"),
    ("CN-SH", &["Shanghai"], "上海市", "上海"),
    ("CN-SN", &["Shaanxi"], "陕西省", "陕西"),
    ("CN-SX", &["Shanxi"], "山西省", "山西"),
    ("CN-TJ", &["Tianjin"], "天津市", "天津"),
    ("CN-TW", &["Taiwan"], "台湾省", "台湾"),
    (
        "CN-XJ",
        &["Xinjiang", "Xinjiang Uygur"],
        "新疆维吾尔自治区",
        "新疆",
    ),
    ("CN-XZ", &["Xizang", "Tibet"], "西藏自治区", "西藏"),
    ("CN-YN", &["Yunnan"], "云南省", "云南"),
    ("CN-ZJ", &["Zhejiang"], "浙江省", "浙江"),
];

/// Words an English spelling may carry after the name (`Jiangsu Province`, `Shanghai Shi`).
const SUFFIXES: [&str; 6] = [
    " province",
    " sheng",
    " shi",
    " municipality",
    " autonomous region",
    " special administrative region",
];

/// The ISO 3166-2 code of `region` in `country` (ISO 3166-1 alpha-2), from any spelling the
/// table knows; `None` for one it does not.
pub fn iso_3166_2(country: &str, region: &str) -> Option<&'static str> {
    if !country.eq_ignore_ascii_case("CN") {
        return None;
    }
    let r = region.trim();
    let lower = r.to_lowercase();
    let mut bare = lower.as_str();
    for s in SUFFIXES {
        if let Some(b) = bare.strip_suffix(s) {
            bare = b.trim_end();
        }
    }
    let code = lower.strip_prefix("cn-").unwrap_or(&lower);
    CN.iter()
        .find(|(iso, names, full, short)| {
            iso[3..].eq_ignore_ascii_case(code)
                || names.iter().any(|n| n.eq_ignore_ascii_case(bare))
                || r == *full
                || r == *short
        })
        .map(|(iso, ..)| *iso)
}

/// Whether an address's `region` in `country` is the region a configuration names (`Jiangsu`,
/// `CN-JS`, `江苏`): the same ISO 3166-2 code, or the same text when either is not in the table.
pub fn same_region(country: &str, region: &str, named: &str) -> bool {
    match (iso_3166_2(country, region), iso_3166_2(country, named)) {
        (Some(a), Some(b)) => a == b,
        _ => region.trim().eq_ignore_ascii_case(named.trim()),
    }
}

/// The key reports file an address under: its ISO 3166-2 code (`CN-JS`), else country and
/// region as written (`US-Oregon`).
pub fn report_key(country: &str, region: &str) -> String {
    match iso_3166_2(country, region) {
        Some(code) => code.to_owned(),
        None => format!("{country}-{region}"),
    }
}

/// A region as a report filter gives it (`CN-JS`, `CN-Jiangsu`, `Jiangsu`, `江苏省`), as
/// [`report_key`] files it; a country prefix is read when there is one, China otherwise.
pub fn report_filter(given: &str) -> String {
    let g = given.trim();
    if let Some((country, rest)) = g.split_once('-')
        && country.len() == 2
        && country.chars().all(|c| c.is_ascii_alphabetic())
    {
        return report_key(&country.to_ascii_uppercase(), rest);
    }
    match iso_3166_2("CN", g) {
        Some(code) => code.to_owned(),
        None => g.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_province_is_one_code() {
        for spelling in [
            "江苏省",
            "江苏",
            "Jiangsu",
            "jiangsu",
            "JIANGSU",
            "Jiangsu Province",
            "JS",
            "js",
            "CN-JS",
            " 江苏省 ",
        ] {
            assert_eq!(iso_3166_2("CN", spelling), Some("CN-JS"), "{spelling}");
        }
        let cases = [
            ("上海市", "CN-SH"),
            ("Shanghai Shi", "CN-SH"),
            ("广东", "CN-GD"),
            ("Inner Mongolia", "CN-NM"),
            ("内蒙古自治区", "CN-NM"),
            ("Tibet", "CN-XZ"),
            ("新疆维吾尔自治区", "CN-XJ"),
            ("Shaanxi", "CN-SN"),
            ("Shanxi", "CN-SX"),
            ("Macau", "CN-MO"),
        ];
        for (spelling, code) in cases {
            assert_eq!(iso_3166_2("CN", spelling), Some(code), "{spelling}");
        }
        assert_eq!(iso_3166_2("CN", "Atlantis"), None);
        assert_eq!(iso_3166_2("US", "Jiangsu"), None);
        // Codes are unique, and every entry reads back from each of its names.
        for (iso, names, full, short) in CN {
            for n in names.iter().chain([&full, &short]) {
                assert_eq!(iso_3166_2("CN", n), Some(iso), "{n}");
            }
            assert_eq!(CN.iter().filter(|(i, ..)| *i == iso).count(), 1);
        }
    }

    #[test]
    fn regions_compare_by_code_and_unknown_ones_as_written() {
        assert!(same_region("CN", "江苏省", "Jiangsu"));
        assert!(same_region("CN", "JS", "江苏"));
        assert!(!same_region("CN", "浙江省", "Jiangsu"));
        assert!(same_region("US", "Oregon", "oregon"));
        assert!(!same_region("US", "Oregon", "Ohio"));
        assert_eq!(report_key("CN", "江苏省"), "CN-JS");
        assert_eq!(report_key("US", "Oregon"), "US-Oregon");
        for given in [
            "CN-JS",
            "CN-Jiangsu",
            "cn-jiangsu",
            "Jiangsu",
            "江苏省",
            "JS",
        ] {
            assert_eq!(report_filter(given), "CN-JS", "{given}");
        }
        assert_eq!(report_filter("US-Oregon"), "US-Oregon");
    }
}
