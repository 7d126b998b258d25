//! `products`: this service alone in a process, as production runs it.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vitrine::run_single(&products::SERVICE).await
}
