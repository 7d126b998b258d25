//! `user-information`: this service alone in a process, as production runs it.

#[global_allocator]
static ALLOCATOR: vitrine::MiMalloc = vitrine::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    vitrine::exit_with(vitrine::run_single(&user_information::SERVICE).await)
}
