//! The shape every list operation shares: `?limit=&cursor=` in, `{items, next_cursor}` out.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use vitrine_kernel::{Cursor, Page, PageLimit};

use super::error::Fields;

/// `?limit=&cursor=` of a list that takes no filters. Lists with filters repeat these two
/// fields (serde's `flatten` cannot be combined with `deny_unknown_fields`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (opaque).
    #[param(min_length = 1, max_length = 256, pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

/// Which page a client asked for, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: PageLimit,
    /// The page after this position; the first page when absent.
    pub cursor: Option<Cursor>,
}

impl Fields {
    /// `?limit=&cursor=` parsed, errors recorded against the parameter. A rejected value reads
    /// as the default here; [`Fields::finish`] refuses the request before it can be used.
    pub fn page(&mut self, limit: Option<u32>, cursor: Option<&str>) -> PageRequest {
        PageRequest {
            limit: self
                .check("limit", PageLimit::parse(limit))
                .unwrap_or_default(),
            cursor: cursor.and_then(|c| self.check("cursor", Cursor::decode(c))),
        }
    }
}

/// An item type that lists return, and the component name its pages have in the OpenAPI
/// document (`ProductOut` pages are `ProductList`), so generated clients keep one named class
/// per list instead of `PageOut_ProductOut`.
pub trait Listed: ToSchema {
    const PAGE_SCHEMA: &'static str;
}

/// One page of a list response. Name it in `utoipa::path` through a type alias
/// (`type ProductList = PageOut<ProductOut>`): written with its generic argument, utoipa would
/// append the item's name to the page's.
#[derive(Debug, Serialize)]
pub struct PageOut<T> {
    pub items: Vec<T>,
    /// Opaque; pass it as `cursor` for the next page. Absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T, U: Into<T>> From<Page<U>> for PageOut<T> {
    fn from(page: Page<U>) -> Self {
        PageOut {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next_cursor.map(|cursor| cursor.encode()),
        }
    }
}

impl<T: Listed> PartialSchema for PageOut<T> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .property(
                "items",
                ArrayBuilder::new().items(Ref::from_schema_name(T::name())),
            )
            .required("items")
            .property(
                "next_cursor",
                ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null])),
            )
            .into()
    }
}

impl<T: Listed> ToSchema for PageOut<T> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(T::PAGE_SCHEMA)
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ApiError;
    use uuid::Uuid;

    #[derive(Serialize, ToSchema)]
    struct ThingOut {
        id: Uuid,
    }

    impl Listed for ThingOut {
        const PAGE_SCHEMA: &'static str = "ThingList";
    }

    #[test]
    fn a_page_serialises_its_items_and_the_encoded_cursor() {
        let ids = [Uuid::now_v7(), Uuid::now_v7()];
        let page = Page {
            items: ids.to_vec(),
            next_cursor: Some(Cursor::after(ids[1])),
        };
        let out: PageOut<ThingOut> = page.map(|id| ThingOut { id }).into();
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["items"][1]["id"], ids[1].to_string());
        assert_eq!(json["next_cursor"], Cursor::after(ids[1]).encode());
        let last: PageOut<ThingOut> = Page::<ThingOut> {
            items: vec![],
            next_cursor: None,
        }
        .into();
        assert_eq!(
            serde_json::to_value(&last).unwrap()["next_cursor"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn its_schema_is_named_by_the_item_and_refers_to_it() {
        assert_eq!(PageOut::<ThingOut>::name(), "ThingList");
        let schema = serde_json::to_value(PageOut::<ThingOut>::schema()).unwrap();
        assert_eq!(
            schema["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/ThingOut"
        );
        assert_eq!(schema["required"], serde_json::json!(["items"]));
        let mut schemas = Vec::new();
        PageOut::<ThingOut>::schemas(&mut schemas);
        assert_eq!(schemas[0].0, "ThingOut");
    }

    #[test]
    fn bad_page_parameters_are_named_and_good_ones_parsed() {
        let mut fields = Fields::new();
        let page = fields.page(Some(0), Some("nope"));
        assert_eq!(page.limit, PageLimit::DEFAULT);
        let Err(ApiError::Validation(errors)) = fields.finish() else {
            panic!("bad page parameters pass");
        };
        let named: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(named, ["limit", "cursor"]);

        let after = Uuid::now_v7();
        let mut fields = Fields::new();
        let page = fields.page(Some(5), Some(&Cursor::after(after).encode()));
        assert!(fields.finish().is_ok());
        assert_eq!(page.limit.get(), 5);
        assert_eq!(page.cursor, Some(Cursor::after(after)));
    }
}
