//! leasetso on blocking std threads.
