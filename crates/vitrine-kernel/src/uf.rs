//! UF (Unidade Federativa): the 26 Brazilian states and the Federal District.

use std::fmt;
use std::str::FromStr;

/// A Brazilian state or the Federal District, by its two-letter code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Uf {
    Ac,
    Al,
    Ap,
    Am,
    Ba,
    Ce,
    Df,
    Es,
    Go,
    Ma,
    Mt,
    Ms,
    Mg,
    Pa,
    Pb,
    Pr,
    Pe,
    Pi,
    Rj,
    Rn,
    Rs,
    Ro,
    Rr,
    Sc,
    Sp,
    Se,
    To,
}

/// The input is not one of the 27 UF codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be a two-letter Brazilian state code (UF), such as SP or RJ")]
pub struct UfError;

impl Uf {
    /// All 27 units, in alphabetical order of their names.
    pub const ALL: [Uf; 27] = [
        Uf::Ac,
        Uf::Al,
        Uf::Ap,
        Uf::Am,
        Uf::Ba,
        Uf::Ce,
        Uf::Df,
        Uf::Es,
        Uf::Go,
        Uf::Ma,
        Uf::Mt,
        Uf::Ms,
        Uf::Mg,
        Uf::Pa,
        Uf::Pb,
        Uf::Pr,
        Uf::Pe,
        Uf::Pi,
        Uf::Rj,
        Uf::Rn,
        Uf::Rs,
        Uf::Ro,
        Uf::Rr,
        Uf::Sc,
        Uf::Sp,
        Uf::Se,
        Uf::To,
    ];

    /// Parses a code such as `SP`, ignoring case and surrounding whitespace.
    pub fn parse(input: &str) -> Result<Uf, UfError> {
        let code = input.trim();
        Uf::ALL
            .into_iter()
            .find(|uf| uf.as_str().eq_ignore_ascii_case(code))
            .ok_or(UfError)
    }

    /// The uppercase code, e.g. `SP`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Uf::Ac => "AC",
            Uf::Al => "AL",
            Uf::Ap => "AP",
            Uf::Am => "AM",
            Uf::Ba => "BA",
            Uf::Ce => "CE",
            Uf::Df => "DF",
            Uf::Es => "ES",
            Uf::Go => "GO",
            Uf::Ma => "MA",
            Uf::Mt => "MT",
            Uf::Ms => "MS",
            Uf::Mg => "MG",
            Uf::Pa => "PA",
            Uf::Pb => "PB",
            Uf::Pr => "PR",
            Uf::Pe => "PE",
            Uf::Pi => "PI",
            Uf::Rj => "RJ",
            Uf::Rn => "RN",
            Uf::Rs => "RS",
            Uf::Ro => "RO",
            Uf::Rr => "RR",
            Uf::Sc => "SC",
            Uf::Sp => "SP",
            Uf::Se => "SE",
            Uf::To => "TO",
        }
    }

    /// The full name in Portuguese, e.g. `São Paulo`.
    pub const fn name(&self) -> &'static str {
        match self {
            Uf::Ac => "Acre",
            Uf::Al => "Alagoas",
            Uf::Ap => "Amapá",
            Uf::Am => "Amazonas",
            Uf::Ba => "Bahia",
            Uf::Ce => "Ceará",
            Uf::Df => "Distrito Federal",
            Uf::Es => "Espírito Santo",
            Uf::Go => "Goiás",
            Uf::Ma => "Maranhão",
            Uf::Mt => "Mato Grosso",
            Uf::Ms => "Mato Grosso do Sul",
            Uf::Mg => "Minas Gerais",
            Uf::Pa => "Pará",
            Uf::Pb => "Paraíba",
            Uf::Pr => "Paraná",
            Uf::Pe => "Pernambuco",
            Uf::Pi => "Piauí",
            Uf::Rj => "Rio de Janeiro",
            Uf::Rn => "Rio Grande do Norte",
            Uf::Rs => "Rio Grande do Sul",
            Uf::Ro => "Rondônia",
            Uf::Rr => "Roraima",
            Uf::Sc => "Santa Catarina",
            Uf::Sp => "São Paulo",
            Uf::Se => "Sergipe",
            Uf::To => "Tocantins",
        }
    }
}

impl fmt::Display for Uf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Uf {
    type Err = UfError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uf::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_round_trips() {
        let codes: HashSet<_> = Uf::ALL.iter().map(Uf::as_str).collect();
        assert_eq!(codes.len(), 27);
        for uf in Uf::ALL {
            assert_eq!(Uf::parse(uf.as_str()), Ok(uf));
            assert_eq!(
                Uf::parse(&format!(" {} ", uf.as_str().to_lowercase())),
                Ok(uf)
            );
            assert_eq!(uf.to_string().parse::<Uf>(), Ok(uf));
        }
        assert_eq!(Uf::parse("sp"), Ok(Uf::Sp));
        assert_eq!(Uf::Sp.name(), "São Paulo");
    }

    #[test]
    fn rejects_unknown_codes() {
        for input in ["", "S", "SPX", "XX", "BR", "São Paulo", "S P"] {
            assert_eq!(Uf::parse(input), Err(UfError), "input {input:?}");
        }
        assert_eq!(
            UfError.to_string(),
            "must be a two-letter Brazilian state code (UF), such as SP or RJ"
        );
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_known_codes(code in "[A-Za-z]{2}") {
            let known = Uf::ALL.iter().any(|uf| uf.as_str() == code.to_ascii_uppercase());
            let parsed = Uf::parse(&code);
            prop_assert_eq!(parsed.is_ok(), known);
            if let Ok(uf) = parsed {
                prop_assert_eq!(uf.as_str(), code.to_ascii_uppercase());
            }
        }
    }
}
