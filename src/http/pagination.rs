//! Strapi's page pagination for lists: `pagination[page]` and `pagination[pageSize]` in the
//! query, `meta.pagination` in the answer. A user may hold many sessions (old data, or a
//! limit switched off), and a list answered whole once ran to megabytes.

use actix_web::HttpRequest;
use serde::Serialize;
use utoipa::ToSchema;

use super::errors::ApiError;

/// Strapi's `defaultLimit`.
pub const DEFAULT_PAGE_SIZE: u64 = 25;
/// Strapi's `maxLimit` default: a larger `pageSize` is read as this, as Strapi reads it.
pub const MAX_PAGE_SIZE: u64 = 100;

/// The page a request asks for, read from its query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u64,
    pub page_size: u64,
}

impl PageRequest {
    /// `pagination[page]` (default 1) and `pagination[pageSize]` (default 25, at most 100);
    /// other query parameters are left to the route. Anything but a whole number above zero
    /// is a 400 `ValidationError` with Strapi's message.
    pub fn of(req: &HttpRequest) -> Result<PageRequest, ApiError> {
        Self::from_query(req.query_string())
    }

    fn from_query(query: &str) -> Result<PageRequest, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| ApiError::validation("The query string could not be read"))?;
        let value = |key: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let page = positive(value("pagination[page]"), "page")?.unwrap_or(1);
        let page_size = positive(value("pagination[pageSize]"), "pageSize")?
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .min(MAX_PAGE_SIZE);
        Ok(PageRequest { page, page_size })
    }

    /// How many items come before this page.
    pub fn skip(&self) -> usize {
        let skip = (self.page - 1).saturating_mul(self.page_size);
        usize::try_from(skip).unwrap_or(usize::MAX)
    }

    pub fn take(&self) -> usize {
        // At most `MAX_PAGE_SIZE`, which fits any usize.
        usize::try_from(self.page_size).unwrap_or(usize::MAX)
    }

    /// `meta.pagination` for a list of `total` items.
    pub fn meta(&self, total: usize) -> Pagination {
        let total = u64::try_from(total).unwrap_or(LARGEST);
        Pagination {
            page: self.page,
            page_size: self.page_size,
            page_count: total.div_ceil(self.page_size),
            total,
        }
    }
}

/// The largest page or page size read: what OpenAPI's `int64` holds. A larger number is well
/// formed and names a page past the end, not an error: there is just nothing there.
const LARGEST: u64 = i64::MAX as u64;

/// A whole number above zero, at most `LARGEST`.
fn positive(value: Option<&str>, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::validation(format!(
            "Invalid '{name}' parameter. Expected an integer > 0"
        ))
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match value.parse::<u64>() {
        Ok(0) => Err(invalid()),
        Ok(n) => Ok(Some(n.min(LARGEST))),
        // Only digits, so the one way to fail is to overflow.
        Err(_) => Ok(Some(LARGEST)),
    }
}

/// Strapi's `meta.pagination`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    #[schema(minimum = 1)]
    pub page: u64,
    #[schema(minimum = 1, maximum = 100)]
    pub page_size: u64,
    /// How many pages there are (0 when there is nothing to list).
    pub page_count: u64,
    /// How many items there are over all pages.
    pub total: u64,
}

/// `meta` of a paginated list.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PageMeta {
    pub pagination: Pagination,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(query: &str) -> Result<PageRequest, String> {
        PageRequest::from_query(query).map_err(|e| e.message)
    }

    #[test]
    fn defaults_and_values_are_read_as_strapi_reads_them() {
        let page = |page, page_size| Ok(PageRequest { page, page_size });
        assert_eq!(read(""), page(1, 25));
        assert_eq!(read("x=1&pagination[page]=3"), page(3, 25));
        assert_eq!(
            read("pagination%5Bpage%5D=2&pagination%5BpageSize%5D=10"),
            page(2, 10)
        );
        assert_eq!(read("pagination[pageSize]=1000"), page(1, 100), "maxLimit");
        for far in ["99999999999999999999999", "9223372036854775808"] {
            assert_eq!(
                read(&format!("pagination[page]={far}")),
                page(LARGEST, 25),
                "past the end, not an error"
            );
        }
        for bad in ["0", "-1", "1.5", "two", "", "+1", "%201", "00", "1e3"] {
            assert_eq!(
                read(&format!("pagination[page]={bad}")),
                Err("Invalid 'page' parameter. Expected an integer > 0".to_owned()),
                "{bad:?}"
            );
            assert!(
                read(&format!("pagination[pageSize]={bad}")).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_meta_counts_pages_and_skips_whole_pages() {
        let request = PageRequest {
            page: 3,
            page_size: 25,
        };
        assert_eq!((request.skip(), request.take()), (50, 25));
        assert_eq!(
            request.meta(51),
            Pagination {
                page: 3,
                page_size: 25,
                page_count: 3,
                total: 51
            }
        );
        assert_eq!(request.meta(0).page_count, 0);
        let far = PageRequest {
            page: LARGEST,
            page_size: 100,
        };
        assert_eq!(far.skip(), usize::MAX);
    }
}
