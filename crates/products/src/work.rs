//! What products consumes from its work queue: the commands its own API queued (batch parts,
//! import chunks). Each handler is idempotent by its store's transaction (a part done or a
//! chunk's lines taken before make a redelivery change nothing), so these need no inbox.

use async_trait::async_trait;
use vitrine_contracts::products as contract;
use vitrine_messaging::Envelope;
use vitrine_messaging::consumer::Handler;

use crate::batches::{BatchId, Batches};
use crate::imports::{ImportId, Imports};

#[derive(Debug, Clone)]
pub struct WorkHandler {
    batches: Batches,
    imports: Imports,
}

impl WorkHandler {
    pub fn new(batches: Batches, imports: Imports) -> Self {
        Self { batches, imports }
    }
}

#[async_trait]
impl Handler for WorkHandler {
    async fn handle(&self, envelope: &Envelope) -> anyhow::Result<()> {
        // Only products queues this work: anything else on the queue is refused and ends in
        // the dead-letter queue, where an operator sees it.
        if envelope.source != contract::SOURCE {
            metrics::counter!("vitrine_messages_refused_total", "reason" => "source").increment(1);
            anyhow::bail!(
                "{} from source {:?}, not from products",
                envelope.kind,
                envelope.source
            );
        }
        match envelope.kind.as_str() {
            contract::BATCH_PART => {
                let command: contract::BatchPart = envelope
                    .decode()
                    .map_err(|e| anyhow::anyhow!("malformed batch command: {e}"))?;
                self.batches
                    .run_part(BatchId::from_uuid(command.batch_id), command.part)
                    .await?;
                Ok(())
            }
            contract::IMPORT_CHUNK => {
                let command: contract::ImportChunk = envelope
                    .decode()
                    .map_err(|e| anyhow::anyhow!("malformed import command: {e}"))?;
                self.imports
                    .run_chunk(
                        ImportId::from_uuid(command.import_id),
                        command.first_line,
                        command.last_line,
                    )
                    .await?;
                Ok(())
            }
            other => {
                tracing::warn!(message_type = other, "ignoring an unexpected work command");
                Ok(())
            }
        }
    }
}
