//! Pure domain primitives for Vitrine: identifiers, money, Brazilian documents, contact
//! details and payment instruments.
//!
//! Every type here is built by parsing ("parse, don't validate"): if you hold a [`Cnpj`], a
//! [`Phone`] or a [`Money`], it is valid and in canonical form, so code further in never
//! re-checks. Parsers accept the forms people actually type (masks, spaces, lowercase) and
//! return an error whose message is plain English meant to be shown next to the offending
//! field, e.g. `cnpj: check digits do not match`. Messages never repeat the input, so card
//! numbers and PIX keys cannot leak through error responses or logs.
//!
//! The crate does no I/O and has no async code. It does not derive serde traits: the API
//! layer maps strings to these types explicitly, which keeps wire formats out of the domain.

pub mod card;
pub mod cep;
pub mod cnpj;
pub mod cpf;
pub mod email;
pub mod id;
pub mod money;
pub mod page;
pub mod phone;
pub mod pix;
pub mod text;
pub mod uf;

pub use card::{CardBrand, CardExpiry, CardExpiryError, CardNumber, CardNumberError};
pub use cep::{Cep, CepError};
pub use cnpj::{Cnpj, CnpjError};
pub use cpf::{Cpf, CpfError};
pub use email::{Email, EmailError};
pub use id::IdError;
pub use money::{Currency, Money, MoneyError};
pub use page::{Cursor, Page, PageError, PageLimit};
pub use phone::{Phone, PhoneError};
pub use pix::{EvpKey, PixKey, PixKeyError, PixKeyType};
pub use text::{Text, TextError};
pub use uf::{Uf, UfError};

/// Re-exported so that [`define_id!`] works in crates that do not depend on `uuid` directly.
pub use uuid;
